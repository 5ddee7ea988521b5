"""The flash chain with the shipped model set: columns, reproducibility, backends, replicas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flashlink.sim.detector.reconstruction import PV_COLUMNS, TRACK_COLUMNS
from flashlink.sim.flash import FlashChain, default_model_dir, run_flash
from flashlink.sim.flash.errors import ModelFormatError
from flashlink.sim.flash.features import select_tracked
from flashlink.sim.generation import EventChunk, concat_chunks, generate, parse_generator_config
from flashlink.sim.io import iter_tables
from flashlink.sim.ntuple import DECAYS, make_ntuple


@pytest.fixture(scope="module")
def gun_events() -> EventChunk:
    cfg = parse_generator_config({"mode": "gun", "channel": "Bu2JpsiK"})
    return concat_chunks(list(generate(cfg, 400, 31, chunk_size=400)))


def test_shipped_set_is_small_and_complete() -> None:
    root = default_model_dir()
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    assert size < 8_000_000, f"shipped model set is {size / 1e6:.1f} MB"
    chain = FlashChain()
    assert chain.config["dataset_sha256"]
    for model in chain.models.values():
        assert model.manifest["training"]["dataset_sha256"] == chain.config["dataset_sha256"]


def test_chain_writes_the_reference_columns(gun_events: EventChunk) -> None:
    chain = FlashChain()
    tables = chain.simulate(gun_events, np.random.default_rng(1))
    tracks = tables["tracks"]
    assert set(TRACK_COLUMNS) <= set(tracks)
    assert set(PV_COLUMNS) <= set(tables["pvs"])
    lengths = {len(v) for v in tracks.values()}
    assert len(lengths) == 1
    n_particles = len(select_tracked(gun_events)["pid"])
    assert len(tables["particles"]["pid"]) == n_particles
    # B+ -> J/psi K+ daughters: most are reconstructed as long tracks in 2 < eta < 5
    assert 0.5 < np.mean(tables["particles"]["reco_type"] == 1) < 0.95
    hits_ndof = 2 * tracks["n_velo"] + tracks["n_ut"] + tracks["n_t"] - 5
    assert np.all(tracks["ndof"] == np.maximum(hits_ndof, 1))
    assert np.mean(hits_ndof >= 1) > 0.99
    assert np.all(tracks["cov_44"] > 0)
    # residuals are small: the track follows its particle
    p_true = 1 / np.abs(tracks["true_qop"])
    assert np.median(np.abs(tracks["p"] / p_true - 1)) < 0.01
    muons = np.abs(tracks["mc_pid"]) == 13
    assert tracks["is_muon"][muons & (tracks["p"] > 10)].mean() > 0.8
    assert tracks["is_muon"][~muons].mean() < 0.1
    kaons = np.abs(tracks["mc_pid"]) == 321
    assert np.median(tracks["dll_k"][kaons & (tracks["type"] == 1)]) > 0


def test_same_seed_same_output_and_backends_agree(gun_events: EventChunk) -> None:
    a = FlashChain().simulate(gun_events, np.random.default_rng(4))["tracks"]
    b = FlashChain().simulate(gun_events, np.random.default_rng(4))["tracks"]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert FlashChain().models["resolution"].backend == "numba"  # auto, numba installed
    for other in ("numpy", "onnx"):
        c = FlashChain(backend=other).simulate(gun_events, np.random.default_rng(4))["tracks"]
        # same random numbers: only float rounding differs between the backends
        assert abs(len(c["p"]) - len(a["p"])) <= 2
        if len(c["p"]) == len(a["p"]):
            close = np.isclose(c["p"], a["p"], rtol=1e-3)
            assert close.mean() > 0.98
            for key in ("dll_k", "chi2ndof", "cov_00"):
                assert np.isclose(c[key], a[key], rtol=1e-3, atol=1e-3).mean() > 0.95, key


def test_oversampling_marks_replicas_and_ntuple_reads_flash(
    gun_events: EventChunk, tmp_path: Path
) -> None:
    out = str(tmp_path / "flash")
    chain = run_flash([gun_events], out, seed=3, oversample=3)
    assert chain.counts["events"] == 3 * gun_events.n_events
    tracks = {
        k: np.concatenate([t[k] for t in iter_tables(f"{out}/tracks.parquet")])
        for k in ("event_id", "gen_event_id", "replica", "p")
    }
    assert set(np.unique(tracks["replica"])) == {0, 1, 2}
    np.testing.assert_array_equal(
        tracks["event_id"], tracks["gen_event_id"] * 3 + tracks["replica"]
    )
    assert np.all(np.diff(tracks["event_id"]) >= 0)
    # replicas of one event differ (independent noise) but share the generator particles
    first = tracks["gen_event_id"] == tracks["gen_event_id"][0]
    per_replica = [tracks["p"][first & (tracks["replica"] == r)] for r in range(3)]
    assert not all(np.array_equal(per_replica[0], x) for x in per_replica[1:])
    stem = str(tmp_path / "nt")
    n = make_ntuple(out, stem, "Bu2JpsiK", formats=("parquet",))
    cands = next(iter_tables(f"{stem}.parquet"))
    matched = cands["B_TRUEMATCH"] == 1
    assert n > 300
    assert np.median(cands["B_M"][matched]) == pytest.approx(
        DECAYS["Bu2JpsiK"].head_mass, abs=0.005
    )


def test_bad_model_sets_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match="not a flash model set"):
        FlashChain(tmp_path)
    (tmp_path / "chain.json").write_text('{"models": ["acceptance"], "pv": {}}')
    with pytest.raises(ModelFormatError, match="lacks the models"):
        FlashChain(tmp_path)
    with pytest.raises(ValueError, match="oversample"):
        FlashChain().process(concat_chunks([]), 1, 0, oversample=0)


def test_family_per_model(gun_events: EventChunk) -> None:
    # the shipped set keeps the family not chosen: covariance=mlp trades its fidelity for speed
    mixed = FlashChain(family="covariance=mlp, pid_K=flow")
    assert mixed.models["covariance"].family == "mlp"
    assert mixed.models["resolution"].family == FlashChain().models["resolution"].family
    assert FlashChain(family="mlp").models["resolution"].family == "mlp"
    tables = mixed.simulate(gun_events, np.random.default_rng(3))
    assert np.all(np.isfinite(tables["tracks"]["cov_44"]))
    for bad in ("covariance", "covariance=gan", "nosuch=mlp", "mlp,flow"):
        with pytest.raises(ModelFormatError, match="model=family pairs"):
            FlashChain(family=bad)


def test_inference_and_cli_never_import_torch() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from flashlink.cli import app\n"
        "import flashlink.sim.flash, flashlink.sim.flash.chain, flashlink.sim.validation\n"
        "for args in (['--help'], ['plugin', 'serve', '--help'], ['sim', 'flash', '--help']):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'zuko' not in sys.modules, 'zuko was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
