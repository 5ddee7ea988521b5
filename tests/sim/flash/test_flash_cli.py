"""'flashlink sim train' and 'flashlink sim flash' as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from flashlink.cli import app
from flashlink.sim.io import iter_tables, read_metadata


def _run(*args: str) -> str:
    result = CliRunner().invoke(app, ["sim", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_flash_with_the_shipped_models(tmp_path: Path) -> None:
    events = str(tmp_path / "events.parquet")
    _run("generate", events, "-n", "200", "--channel", "Bd2Kpi", "--seed", "9")
    out = str(tmp_path / "flash")
    text = _run("flash", events, out, "--chunk-size", "64", "--oversample", "2")
    assert "200 events" not in text  # 2 replicas: 400 simulated events
    assert "400 events" in text
    assert "particles/s" in text
    meta = read_metadata(f"{out}/tracks.parquet")
    assert meta["oversample"] == 2
    assert meta["dataset_sha256"]
    tracks = next(iter_tables(f"{out}/tracks.parquet"))
    assert set(tracks["replica"]) == {0, 1}
    _run("ntuple", out, str(tmp_path / "nt"), "--decay", "Bd2Kpi", "--format", "parquet")
    numpy_out = str(tmp_path / "flash_np")
    _run("flash", events, numpy_out, "--backend", "numpy", "-n", "50")


def test_train_a_subset_then_flash_needs_a_complete_set(tmp_path: Path) -> None:
    events = str(tmp_path / "events.parquet")
    _run("generate", events, "-n", "150", "--channel", "K", "--spectrum", "log_p", "--seed", "4")
    detailed = str(tmp_path / "detailed")
    _run("detailed", events, detailed)
    models = str(tmp_path / "models")
    table = str(tmp_path / "table.parquet")
    text = _run(
        "train", detailed, "--out", models, "--only", "acceptance,is_muon",
        "--epoch-scale", "0.1", "--save-table", table,
    )  # fmt: skip
    assert "acceptance" in text
    assert "is_muon" in text
    chain = json.loads((Path(models) / "chain.json").read_text())
    assert chain["models"] == ["acceptance", "is_muon"]
    assert chain["pv"]["fallback_sigma"][2] > 0
    assert read_metadata(table)["sha256"] == chain["dataset_sha256"]
    result = CliRunner().invoke(
        app, ["sim", "flash", events, str(tmp_path / "f"), "--models", models]
    )
    assert result.exit_code == 2
    assert "lacks the models" in " ".join(result.output.split())


def test_flash_and_train_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["sim", "flash", str(tmp_path / "none.parquet"), str(tmp_path)])
    assert result.exit_code == 2
    assert "cannot open" in result.output
    result = runner.invoke(
        app, ["sim", "flash", "x.parquet", str(tmp_path), "--models", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "not a flash model set" in " ".join(result.output.split())
    result = runner.invoke(app, ["sim", "train", str(tmp_path / "nothing"), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "cannot open" in result.output
