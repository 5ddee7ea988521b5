from __future__ import annotations

from pathlib import Path

import uproot
from typer.testing import CliRunner

from flashlink.cli import app
from flashlink.sim.io import iter_events, read_metadata


def _run(*args: str) -> str:
    result = CliRunner().invoke(app, ["sim", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_generate_detailed_ntuple_chain(tmp_path: Path) -> None:
    events = str(tmp_path / "events.parquet")
    out = _run("generate", events, "-n", "60", "--seed", "3", "--chunk-size", "25")
    assert "60 events" in out
    assert read_metadata(events)["seed"] == 3
    assert sum(c.n_events for c in iter_events(events)) == 60
    detailed = str(tmp_path / "detailed")
    out = _run("detailed", events, detailed, "-n", "50", "--chunk-size", "20")
    assert "50 events" in out
    assert "ms/particle" in out
    stem = str(tmp_path / "nt" / "bu")
    _run("ntuple", detailed, stem, "--decay", "Bu2JpsiK")
    tree = uproot.open(f"{stem}.root")["DecayTree"]
    assert tree.num_entries > 0
    assert "Kplus_PIDK" in [b.name for b in tree.branches]


def test_hepmc_in_and_out(tmp_path: Path) -> None:
    hepmc = str(tmp_path / "gun.hepmc3")
    _run("generate", hepmc, "-n", "20", "--mode", "gun", "--channel", "Bd2Kpi")
    out = _run("detailed", hepmc, str(tmp_path / "det"), "--chunk-size", "8")
    assert "20 events" in out


def test_bad_inputs_fail_with_a_message(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["sim", "generate", str(tmp_path / "x.parquet"), "--channel", "B2X"]
    )
    assert result.exit_code == 2
    assert "B2X" in result.output
    result = runner.invoke(app, ["sim", "detailed", str(tmp_path / "none.parquet"), str(tmp_path)])
    assert result.exit_code == 2
    assert "cannot open" in result.output
    result = runner.invoke(
        app, ["sim", "ntuple", str(tmp_path), str(tmp_path / "n"), "--decay", "X"]
    )
    assert result.exit_code == 2
    assert "valid decays" in result.output


def test_generator_config_file(tmp_path: Path) -> None:
    config = tmp_path / "gen.yaml"
    config.write_text("mode: gun\nchannel: K\nspectrum: {kind: log_p, p_min: 5, p_max: 6}\n")
    events = tmp_path / "k.parquet"
    _run("generate", str(events), "-n", "30", "--config", str(config))
    chunk = next(iter_events(str(events)))
    p = (chunk["px"] ** 2 + chunk["py"] ** 2 + chunk["pz"] ** 2) ** 0.5
    assert set(abs(chunk["pid"])) == {321}
    assert p.min() >= 5.0
    assert p.max() <= 6.0
    config.write_text("mode: gun\nchanel: K\n")
    result = CliRunner().invoke(app, ["sim", "generate", str(events), "--config", str(config)])
    assert result.exit_code == 2
    assert "chanel" in result.output
