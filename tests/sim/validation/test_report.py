"""Validation end to end: shipped flash models against the reference on a CI-sized sample.

The issue's done-criteria (W1 <= 0.02, AUC <= 0.55, efficiencies within 2 sigma, pulls within
10%, mass peak within 5%) are measured on large held-out samples by docs/flash.md's recipe;
here a ~400-event sample asserts looser bounds that the statistical noise of such a sample
allows (e.g. the W1 floor of ~1000 tracks alone is ~0.03).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from flashlink.cli import app
from flashlink.sim.detector.pipeline import run_detailed
from flashlink.sim.flash import run_flash
from flashlink.sim.generation import generate, parse_generator_config
from flashlink.sim.io import ParquetSink
from flashlink.sim.validation import validate_samples


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    tmp = tmp_path_factory.mktemp("validation")
    events = str(tmp / "events.parquet")
    cfg = parse_generator_config({"mode": "gun", "channel": "Bu2JpsiK"})
    with ParquetSink(events) as sink:
        for chunk in generate(cfg, 500, 41, chunk_size=250):
            sink.write(chunk.columns)
    from flashlink.sim.io import iter_events

    run_detailed(iter_events(events, 250), str(tmp / "ref"), seed=41)
    run_flash(iter_events(events, 250), str(tmp / "flash"), seed=41, oversample=2)
    return events, str(tmp / "ref"), str(tmp / "flash")


def test_report_on_a_ci_sample(samples: tuple[str, str, str], tmp_path: Path) -> None:
    _, ref, flash = samples
    result = validate_samples(flash, ref, str(tmp_path), label="ci", decay="Bu2JpsiK")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    page = (tmp_path / "index.html").read_text()
    assert "Done-criteria" in page
    for png in ("model_resolution.png", "efficiency.png", "mass.png", "oversampling.png"):
        assert png in page
        assert (tmp_path / png).stat().st_size > 5000
    assert metrics["summary"] == result["summary"]
    # looser bounds than the issue's, for ~1400 tracks (see the module docstring)
    for name, info in result["models"].items():
        for col, m in info.get("features", {}).items():
            # the central 99% (plain W1 of chi2/ndof is ruled by failed fits at 1e9: 0.18 here
            # with a KS p-value of 0.4), and the distributions with KS
            assert m["w1_core"] < max(0.15, 4 * m["w1_floor"]), (name, col, m)
            assert m["ks"] < 0.2, (name, col, m)
    aucs = {name: info["c2st"]["auc"] for name, info in result["models"].items()}
    # the classifiers meet the 0.55 with room; the generators do not on large held-out
    # samples (0.60-0.69 on test_Bu, docs/flash.md) but this sample is too small to tell them
    # apart (0.50-0.57; the previous set gave 0.72-0.92 on test_Bu): regression guards only
    for name in ("track_type", "is_muon"):
        assert aucs[name] < 0.6, aucs
    assert all(a < 0.75 for a in aucs.values() if np.isfinite(a)), aucs  # 0.50-0.57 measured
    eff = result["efficiency"]["reconstructed"]
    assert eff["within_2sigma"] >= 0.6, eff
    for k in ("qop", "x", "tx"):
        assert abs(result["pulls"][k]["rel_diff"]) < 0.3, result["pulls"][k]
    mass = result["mass_peak"]
    assert mass["flash"]["matched"] > 150
    assert abs(mass["mean_rel_diff"]) < 0.002
    assert abs(mass["width_rel_diff"]) < 0.3
    # bootstrap errors: ~4 % of a width for ~1000 candidates per side (docs/flash.md)
    assert 0.0 < mass["mean_rel_diff_err"] < 0.002
    assert 0.01 < mass["width_rel_diff_err"] < 0.2
    assert f"+- {mass['width_rel_diff_err']:.3f}" in result["summary"]["mass_width_rel_diff"]
    roc = result["pid_roc"]
    assert roc["flash"] is None or roc["flash"]["auc"] > 0.5
    over = result["oversampling"]
    assert over["k"] == 2
    assert over["error"][1] <= over["error"][0] * 1.05


def test_flash_tracks_the_same_particles_as_the_reference(samples: tuple[str, str, str]) -> None:
    from flashlink.sim.io import iter_tables

    _, ref, flash = samples
    cols = ["event_id", "gen_index"]
    r = next(iter_tables(f"{ref}/particles.parquet", cols, batch_rows=10**7))
    f = next(iter_tables(f"{flash}/particles.parquet", [*cols, "replica"], batch_rows=10**7))
    first = f["replica"] == 0
    # same selection (species, status, pz > 0, p > 0.2 GeV): the same particles, one per row
    np.testing.assert_array_equal(f["event_id"][first] // 2, r["event_id"])
    np.testing.assert_array_equal(f["gen_index"][first], r["gen_index"])


def test_cli_validate_and_errors(samples: tuple[str, str, str], tmp_path: Path) -> None:
    _, ref, flash = samples
    runner = CliRunner()
    result = runner.invoke(app, ["sim", "validate", flash, ref, str(tmp_path / "r"), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert "max_c2st_auc" in result.output
    assert (tmp_path / "r" / "metrics.json").exists()
    result = runner.invoke(app, ["sim", "validate", str(tmp_path / "none"), ref, str(tmp_path)])
    assert result.exit_code == 2
    assert "cannot open" in result.output
