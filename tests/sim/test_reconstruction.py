from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from flashlink.sim.detector.geometry import load_geometry
from flashlink.sim.detector.pid import MASSES, rich_dll, rich_photons
from flashlink.sim.detector.pipeline import DetailedSimulation
from flashlink.sim.generation import concat_chunks, generate, parse_generator_config


def _geometry_text() -> str:
    return resources.files("flashlink.sim.detector").joinpath("geometry.toml").read_text()


def _run(
    gun: dict[str, object], n: int, seed: int = 1, geometry: Path | None = None
) -> dict[str, dict[str, np.ndarray]]:
    chunk = concat_chunks(list(generate(parse_generator_config({"mode": "gun", **gun}), n, seed)))
    return DetailedSimulation(load_geometry(geometry), seed).process(chunk)


def _robust_sigma(x: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def _muons(p_min: float, p_max: float) -> dict[str, object]:
    return {"channel": "mu", "spectrum": {"kind": "log_p", "p_min": p_min, "p_max": p_max}}


def test_kalman_pulls_have_unit_width() -> None:
    tracks = _run(_muons(3.0, 100.0), 700)["tracks"]
    good = (tracks["ghost"] == 0) & (tracks["type"] == 1) & (tracks["chi2ndof"] < 3)
    assert good.sum() > 500
    for i, name in enumerate(("x", "y", "tx", "ty", "qop")):
        pull = (tracks[name] - tracks[f"true_{name}"])[good] / np.sqrt(tracks[f"cov_{i}{i}"][good])
        assert pull.std() == pytest.approx(1.0, abs=0.07), name
        assert abs(pull.mean()) < 0.12, name
    assert np.median(tracks["chi2ndof"][good]) == pytest.approx(1.0, abs=0.1)


def _dp_over_p(tracks: dict[str, np.ndarray], edges: list[float]) -> np.ndarray:
    good = (tracks["ghost"] == 0) & (tracks["type"] == 1) & (tracks["chi2ndof"] < 5)
    p_true = 1 / np.abs(tracks["true_qop"][good])
    rel = tracks["p"][good] / p_true - 1
    bins = np.digitize(p_true, edges)
    return np.array([_robust_sigma(rel[bins == k]) for k in range(1, len(edges))])


def test_momentum_resolution_is_scattering_plus_hit_resolution(tmp_path: Path) -> None:
    """sigma(p)/p = a (+) b p: a from multiple scattering (flat in p), b p from hit resolution."""
    edges = [8.0, 25.0, 80.0, 200.0]
    centres = np.sqrt(np.array(edges[:-1]) * np.array(edges[1:]))

    def no_material(line: str) -> str:
        if line.startswith("x0_frac"):
            return "x0_frac = 0.0"
        return "thickness_mm = 1e-6" if line.startswith("thickness_mm") else line

    path = tmp_path / "no_material.toml"
    path.write_text("\n".join(no_material(line) for line in _geometry_text().splitlines()))
    resolution = _dp_over_p(_run(_muons(8.0, 200.0), 400, 2, path)["tracks"], edges)
    # without material only the hit resolution is left: sigma(p)/p grows linearly with p
    slope = resolution / centres
    assert slope.max() / slope.min() < 1.35
    full = _dp_over_p(_run(_muons(8.0, 200.0), 400, 4)["tracks"], edges)
    assert np.all(full > resolution)
    # what the material adds in quadrature is (nearly) flat in p, as multiple scattering is
    scattering = np.sqrt(full**2 - resolution**2)
    assert scattering.max() / scattering.min() < 1.6
    assert resolution[-1] / resolution[0] > 5
    assert 0.001 < full.min() < full.max() < 0.01


def test_efficiency_falls_outside_the_acceptance() -> None:
    gun = {
        "channel": "pi",
        "spectrum": {"kind": "log_p", "p_min": 5.0, "p_max": 50.0},
        "eta_min": 1.0,
        "eta_max": 6.5,
    }
    particles = _run(gun, 1200, 5)["particles"]
    primary = particles["gen_index"] == 0
    eta, found = particles["eta"][primary], particles["reco_type"][primary] == 1
    assert found[(eta > 2.5) & (eta < 4.5)].mean() > 0.75
    assert found[eta < 1.7].mean() < 0.1
    assert found[eta > 5.5].mean() < 0.1


def test_kaon_pion_separation_grows_with_cherenkov_photons() -> None:
    rich = load_geometry().config.rich
    rng = np.random.default_rng(7)
    n = 4000
    p = rng.uniform(10, 60, n)
    inside = np.ones(n, bool)
    n_tracks = np.full(n, 20.0)

    def auc(yield_per_cm: float) -> float:
        r = rich.model_copy(update={"photons_per_cm": yield_per_cm})
        dll = {}
        for name in ("K", "pi"):
            counts, angles = rich_photons(
                rng, r, p_true=p, mass=np.full(n, MASSES[name]), inside=inside, n_tracks=n_tracks
            )
            dll[name] = rich_dll(
                r, p_reco=p, counts=counts, angles=angles, inside=inside, n_tracks=n_tracks
            )["K"]
        # probability that a random kaon has a larger DLL(K-pi) than a random pion
        k, pi = np.sort(dll["K"]), np.sort(dll["pi"])
        return float(np.searchsorted(pi, k, side="left").mean() / n)

    few, design, many = auc(5.0), auc(rich.photons_per_cm), auc(4 * rich.photons_per_cm)
    assert few < design < many
    assert design > 0.9


def test_full_chain_pid_and_muon_id() -> None:
    kaons = _run(
        {"channel": "K", "spectrum": {"kind": "log_p", "p_min": 12.0, "p_max": 60.0}}, 300, 8
    )["tracks"]
    muons = _run(_muons(12.0, 60.0), 300, 9)["tracks"]
    k_ok = (kaons["ghost"] == 0) & (np.abs(kaons["mc_pid"]) == 321)
    mu_ok = (muons["ghost"] == 0) & (np.abs(muons["mc_pid"]) == 13)
    assert np.median(kaons["dll_k"][k_ok]) > 5
    assert np.median(muons["dll_k"][mu_ok]) < 0
    assert muons["is_muon"][mu_ok].mean() > 0.9
    assert kaons["is_muon"][k_ok].mean() < 0.1


def test_busy_events_have_vertices_and_some_ghosts() -> None:
    chunk = concat_chunks(list(generate(parse_generator_config({"mode": "bbbar"}), 12, 3)))
    out = DetailedSimulation(load_geometry(), 3).process(chunk)
    pvs, tracks = out["pvs"], out["tracks"]
    fitted = pvs["source"] == 0
    assert fitted.sum() >= 10
    dz = (pvs["z"] - pvs["true_z"])[fitted]
    assert np.median(np.abs(dz)) < 0.2
    assert len(tracks["p"]) > 12 * 10
    assert 0.0 <= tracks["ghost"].mean() < 0.2


def test_detailed_simulation_is_reproducible() -> None:
    a = _run({"channel": "Dst2D0pi"}, 40, 11)["tracks"]
    b = _run({"channel": "Dst2D0pi"}, 40, 11)["tracks"]
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_chunks_without_tracks_still_give_tables(tmp_path: Path) -> None:
    from flashlink.sim.detector.pipeline import run_detailed
    from flashlink.sim.io import iter_tables

    outside = parse_generator_config(
        {"mode": "gun", "channel": "pi", "eta_min": 6.0, "eta_max": 7.0}
    )
    inside = parse_generator_config({"mode": "gun", "channel": "Bd2Kpi"})
    chunks = [*generate(outside, 10, 1, 10)]
    chunks += [
        c.__class__.from_columns({**c.columns, "event_id": c["event_id"] + 10})
        for c in generate(inside, 10, 2, 10)
    ]
    sim = run_detailed(chunks, str(tmp_path), seed=1)
    assert sim.counts["events"] == 20
    tracks = list(iter_tables(str(tmp_path / "tracks.parquet")))
    n = sum(len(t["p"]) for t in tracks)
    assert n == sim.counts["tracks"] > 0
    assert all(np.all(t["event_id"] >= 10) for t in tracks)
