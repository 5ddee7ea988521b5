"""Flash is the default production: the examples and the demo ask for it, and they are valid
requests (no services needed; tests/production/test_flash.py runs one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flashlink.cli.demo import demo_request
from flashlink.production import load_request, parse_request
from flashlink.production.errors import RequestError

EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "productions").glob("*.yaml"))


def test_there_are_example_requests() -> None:
    assert len(EXAMPLES) >= 3, EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_is_a_valid_flash_request_with_a_report(path: Path) -> None:
    request = load_request(path)
    assert request.name == path.stem  # the outputs and Pods are named after the file
    assert request.simulation == "flash"
    assert request.models == "shipped"
    assert request.reference.events > 0  # each one ends with a validation report
    assert request.output.endswith(f"/{path.stem}")


def test_a_request_without_simulation_is_flash_with_the_shipped_models() -> None:
    request = parse_request(
        {"name": "x", "event": {"kind": "gun"}, "events": 10, "events_per_job": 5, "output": "/o"}
    )
    assert (request.simulation, request.models, request.oversampling) == ("flash", "shipped", 1)
    assert request.reference.events > 0


def test_the_demo_request_is_valid_and_split_in_four(tmp_path: Path) -> None:
    request = parse_request(demo_request(tmp_path, 100_000, events_per_job=None, reference=1000))
    assert request.simulation == "flash"
    assert request.event.kind == "gun"
    assert request.event.channel == "Bu2JpsiK"
    assert request.n_jobs == 4
    assert request.reference.events == 1000
    assert request.output == str(tmp_path)
    # fewer events than chunks: one job per event at most, never an invalid request
    assert parse_request(demo_request(tmp_path, 3, events_per_job=None, reference=0)).n_jobs == 3
    assert parse_request(demo_request(tmp_path, 10, events_per_job=50, reference=0)).n_jobs == 1


def test_oversampling_is_refused_for_detailed_with_the_field_named() -> None:
    with pytest.raises(RequestError, match="oversampling applies to simulation: flash only"):
        parse_request(
            {
                "name": "x",
                "event": {"kind": "gun"},
                "events": 10,
                "events_per_job": 5,
                "simulation": "detailed",
                "oversampling": 2,
                "output": "/o",
            }
        )
