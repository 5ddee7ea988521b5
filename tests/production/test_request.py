"""Production requests: the shipped examples parse, bad fields are named with what is valid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from flashlink.production import RequestError, load_request, parse_request

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "productions").glob("*.yaml"))


def _good(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "bu2jpsik",
        "event": {"kind": "gun", "channel": "Bu2JpsiK"},
        "events": 1000,
        "events_per_job": 100,
        "output": "/data/prod",
    }
    data.update(changes)
    return data


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_parse(path: Path) -> None:
    request = load_request(path)
    assert request.n_jobs == -(-request.events // request.events_per_job)


def test_defaults_and_jobs() -> None:
    request = parse_request(_good(events=1050))
    assert request.n_jobs == 11
    assert (request.site, request.simulation, request.oversampling) == ("local", "flash", 1)
    assert request.resources.cpu == "1"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"name": "Bad_Name"}, "name: 'Bad_Name' is not a lower-case DNS label"),
        ({"events": 0}, "events: Input should be greater than 0"),
        ({"events_per_job": 2000}, "events_per_job (2000) is larger than events (1000)"),
        ({"event": {"kind": "gun", "channel": "Zz"}}, "use one of Bu2JpsiK, Bd2Kpi, Dst2D0pi"),
        ({"event": {"kind": "pythia"}}, "a pythia production needs process: minbias or bbbar"),
        ({"event": {"kind": "cosmic"}}, "event.kind: Input should be 'gun' or 'pythia'"),
        ({"output": "data/prod"}, "output: 'data/prod' is relative"),
        ({"output": "gs://b/p"}, "use a directory path or s3://bucket/prefix"),
        ({"output": "s3://"}, "names no bucket"),
        ({"resources": {"cpu": "lots"}}, "resources.cpu: 'lots' is not a Kubernetes quantity"),
        ({"resources": {"gpu": 1}}, "resources.gpu: unknown field"),
        ({"evnts": 3}, "evnts: unknown field"),
        ({"retries": -1}, "retries: Input should be greater than or equal to 0"),
        ({"simulation": "detailed", "oversampling": 3}, "oversampling applies to simulation"),
        ({"family": "covariance=gan"}, "family: family 'covariance=gan' is invalid"),
    ],
)
def test_bad_fields_are_named(changes: dict[str, Any], expected: str) -> None:
    with pytest.raises(RequestError) as info:
        parse_request(_good(**changes), "req.yaml")
    assert "invalid production request req.yaml" in str(info.value)
    assert expected in str(info.value)


def test_missing_fields_all_reported() -> None:
    with pytest.raises(RequestError) as info:
        parse_request({"name": "x"})
    for field in (
        "event: missing",
        "events: missing",
        "events_per_job: missing",
        "output: missing",
    ):
        assert field in str(info.value)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(RequestError, match="cannot read the file"):
        load_request(tmp_path / "absent.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(RequestError, match=r"\(top level\): expected a mapping, got list"):
        load_request(bad)
