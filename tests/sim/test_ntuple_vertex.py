"""The stacked vertex fit of the ntuple equals the per-candidate fit it replaced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from flashlink.sim.detector.pipeline import run_detailed
from flashlink.sim.generation import generate, parse_generator_config
from flashlink.sim.io import iter_tables
from flashlink.sim.ntuple import DECAYS
from flashlink.sim.ntuple import candidates as cand_module

Array = npt.NDArray[np.float64]


def _reference_vertex(states: Array, zs: Array, covs: Array) -> tuple[Array, Array, float]:
    """The per-candidate fit as shipped before the stacked one (commit 080be94), verbatim."""
    x0, y0, tx, ty = states[:, 0], states[:, 1], states[:, 2], states[:, 3]
    v = np.array([x0.mean(), y0.mean(), zs.mean()])
    cov = np.eye(3)
    chi2 = 0.0
    for _ in range(5):
        dz = v[2] - zs
        a = np.zeros((3, 3))
        g = np.zeros(3)
        chi2 = 0.0
        for i in range(len(states)):
            j = np.array([[1, 0, dz[i], 0, 0], [0, 1, 0, dz[i], 0]])
            c2 = j @ covs[i] @ j.T
            w = np.linalg.inv(c2)
            r = np.array([v[0] - x0[i] - tx[i] * dz[i], v[1] - y0[i] - ty[i] * dz[i]])
            d = np.array([[1.0, 0.0, -tx[i]], [0.0, 1.0, -ty[i]]])
            a += d.T @ w @ d
            g += d.T @ w @ r
            chi2 += float(r @ w @ r)
        try:
            cov = np.asarray(np.linalg.inv(a), dtype=np.float64)
        except np.linalg.LinAlgError:
            return v, np.full((3, 3), np.nan), np.inf
        v = v - cov @ g
    return v, cov, chi2


def _combinations(decay_name: str, seed: int, tmp: Path) -> tuple[Array, Array, Array]:
    """States (N, n, 5), z (N, n) and covariances (N, n, 5, 5) of every combination the
    ntuple fits, on simulated gun events of the decay."""
    out = str(tmp / decay_name)
    config = parse_generator_config({"mode": "gun", "channel": decay_name})
    run_detailed(generate(config, 80, seed, chunk_size=100), out, seed=seed)
    tracks: dict[str, Any] = {}
    for table in iter_tables(f"{out}/tracks.parquet"):
        for k, v in table.items():
            tracks[k] = np.concatenate([tracks[k], v]) if k in tracks else v
    decay = DECAYS[decay_name]
    combos = []
    for event in np.unique(tracks["event_id"]):
        rows = np.flatnonzero((tracks["event_id"] == event) & (tracks["type"] == 1))
        for combo in cand_module._combinations(decay, tracks["charge"][rows].astype(np.int64)):
            combos.append(rows[list(combo)])
    sel = np.array(combos)
    flat = sel.ravel()
    covs = cand_module._track_cov(tracks, flat).reshape(*sel.shape, 5, 5)
    states = np.stack([tracks[k][flat] for k in ("x", "y", "tx", "ty", "qop")], axis=1)
    return states.reshape(*sel.shape, 5), tracks["z"][sel], covs


def _assert_equal_to_reference(states: Array, zs: Array, covs: Array) -> None:
    v, cov, chi2 = cand_module._vertex(states, zs, covs)
    for k in range(len(zs)):
        rv, rcov, rchi2 = _reference_vertex(states[k], zs[k], covs[k])
        np.testing.assert_allclose(v[k], rv, rtol=1e-9, atol=0)
        np.testing.assert_allclose(cov[k], rcov, rtol=1e-9, atol=0)  # NaN == NaN here
        if np.isfinite(rchi2):
            assert chi2[k] == pytest.approx(rchi2, rel=1e-9)
        else:
            assert chi2[k] == rchi2


@pytest.mark.parametrize("decay_name", sorted(DECAYS))
def test_stacked_fit_equals_the_per_candidate_fit(decay_name: str, tmp_path: Path) -> None:
    states, zs, covs = _combinations(decay_name, 31, tmp_path)
    assert len(zs) > 30  # enough real candidates to mean something
    _assert_equal_to_reference(states, zs, covs)
    # the intermediates' vertices are fitted on subsets of the same tracks
    for _, _, idx in DECAYS[decay_name].intermediates:
        cols = list(idx)
        _assert_equal_to_reference(states[:, cols], zs[:, cols], covs[:, cols])


def test_a_singular_candidate_fails_alone(tmp_path: Path) -> None:
    states, zs, covs = _combinations("Bd2Kpi", 32, tmp_path)
    # parallel tracks along z leave the vertex z unconstrained: the normal matrix is singular
    bad = states[:1].copy()
    bad[0, :, 2:4] = 0.0
    states = np.concatenate([states[:5], bad, states[5:10]])
    zs = np.concatenate([zs[:5], zs[:1], zs[5:10]])
    covs = np.concatenate([covs[:5], covs[:1], covs[5:10]])
    _, cov, chi2 = cand_module._vertex(states, zs, covs)
    assert chi2[5] == np.inf
    assert np.isnan(cov[5]).all()
    assert np.isfinite(np.delete(chi2, 5)).all()
    assert np.isfinite(np.delete(cov, 5, 0)).all()
    _assert_equal_to_reference(states, zs, covs)
