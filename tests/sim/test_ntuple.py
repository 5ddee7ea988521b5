from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import uproot

from flashlink.sim.detector.pipeline import run_detailed
from flashlink.sim.errors import SimConfigError, StorageError
from flashlink.sim.generation import generate, parse_generator_config
from flashlink.sim.io import iter_tables
from flashlink.sim.ntuple import DECAYS, NtupleWriter, make_ntuple
from flashlink.sim.ntuple import writer as writer_module


def _simulate(tmp: Path, channel: str, n: int, seed: int) -> str:
    out = str(tmp / channel)
    config = parse_generator_config({"mode": "gun", "channel": channel})
    run_detailed(generate(config, n, seed, chunk_size=100), out, seed=seed)
    return out


def test_bu_to_jpsi_k_peak_sits_at_the_pdg_mass(tmp_path: Path) -> None:
    detailed = _simulate(tmp_path, "Bu2JpsiK", 400, 21)
    stem = str(tmp_path / "ntuple" / "Bu2JpsiK")
    n = make_ntuple(detailed, stem, "Bu2JpsiK", chunk_rows=250, run_number=7)
    tree = uproot.open(f"{stem}.root")["DecayTree"]
    assert tree.num_entries == n > 100
    data = tree.arrays(library="np")
    assert tree.keys()[:2] == ["runNumber", "eventNumber"]
    assert isinstance(tree.file.compression, uproot.ZSTD)
    assert set(data["runNumber"].tolist()) == {7.0}
    matched = data["B_TRUEMATCH"] == 1
    mass, err = data["B_M"][matched], data["B_MERR"][matched]
    assert matched.sum() > 100
    assert np.median(mass) == pytest.approx(DECAYS["Bu2JpsiK"].head_mass, abs=0.003)
    width = 1.4826 * np.median(np.abs(mass - np.median(mass)))
    assert 0.004 < width < 0.03
    # the width agrees with the per-candidate resolution from the track covariances
    assert 0.8 < width / np.median(err) < 1.5
    assert np.median(data["Jpsi_M"][matched]) == pytest.approx(3.0969, abs=0.003)
    assert np.median(data["B_DIRA_OWNPV"][matched]) > 0.9999
    assert np.median(data["Kplus_PIDK"][matched]) > 0
    assert np.mean(data["muplus_isMuon"][matched]) > 0.8
    # the Parquet copy holds the same candidates
    parquet = list(iter_tables(f"{stem}.parquet"))
    np.testing.assert_allclose(np.concatenate([t["B_M"] for t in parquet]), data["B_M"])


def test_every_branch_is_documented(tmp_path: Path) -> None:
    doc = writer_module.__doc__ or ""
    detailed = _simulate(tmp_path, "Dst2D0pi", 120, 22)
    stem = str(tmp_path / "dst")
    make_ntuple(detailed, stem, "Dst2D0pi", formats=("root",))
    tree = uproot.open(f"{stem}.root")["DecayTree"]
    for branch in [b.name for b in tree.branches]:
        suffix = branch.split("_", 1)[1] if "_" in branch else branch
        assert suffix.split("_")[0] in doc or branch in doc, branch
    data = tree.arrays(["deltaM", "Dst_TRUEMATCH"], library="np")
    good = data["Dst_TRUEMATCH"] == 1
    assert np.median(data["deltaM"][good]) == pytest.approx(0.14542, abs=0.002)


def test_bad_ntuple_requests_are_reported(tmp_path: Path) -> None:
    with pytest.raises(SimConfigError, match="Lb2pK"):
        make_ntuple(str(tmp_path), str(tmp_path / "x"), "Lb2pK")
    with pytest.raises(SimConfigError, match=r"run_number -1 .*\[0, 2\*\*31\)"):
        make_ntuple(str(tmp_path), str(tmp_path / "x"), "Bu2JpsiK", run_number=-1)
    with pytest.raises(StorageError, match="csv"):
        NtupleWriter(str(tmp_path / "x"), ("csv",))
    with pytest.raises(StorageError, match="cannot open"):
        make_ntuple(str(tmp_path / "missing"), str(tmp_path / "x"), "Bd2Kpi")
