from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flashlink.sim.detector import FieldMap, load_geometry, transport
from flashlink.sim.detector.materials import highland
from flashlink.sim.detector.transport import DECAYED
from flashlink.sim.errors import SimConfigError
from flashlink.sim.generation import EventChunk, concat_chunks, generate, parse_generator_config

_SCATTER_GEOMETRY = """
[beam]
sigma_xy = 0.0
sigma_z = 0.0
[magnet]
b0 = 0.0
z_in = 3000.0
z_out = 7000.0
width = 500.0
z_min = 2000.0
z_max = 8000.0
grid_step = [500.0, 500.0, 500.0]
half_x = 1000.0
half_y = 1000.0
rk_step = 500.0
[materials]
si = [0.49848, 173.0e-9, 2.329]
[rich]
n_minus_1 = 0.0014
length_mm = 1000.0
photons_per_cm = 100.0
sigma_theta = 0.0016
background = 1.0
background_per_track = 0.0
theta_max = 0.065
[ecal]
stochastic = 0.1
constant = 0.01
cluster_radius = 60.0
position_resolution = 2.0
hadron_fraction = [0.1, 0.4]
[muon]
foi_a = 20.0
foi_b = 1500.0
[[layer]]
name = "velo"
kind = "pixel"
z = [0.0, 100.0, 300.0, 400.0]
half_x = 100.0
half_y = 100.0
x0_frac = 0.0
material = "si"
thickness_mm = 0.001
resolution = 1e-6
[[layer]]
name = "scatterer"
kind = "absorber"
z = [200.0]
half_x = 100.0
half_y = 100.0
x0_frac = 0.05
material = "si"
thickness_mm = 0.001
[[layer]]
name = "ecal"
kind = "ecal"
z = [1000.0]
half_x = 100.0
half_y = 100.0
x0_frac = 25.0
material = "si"
thickness_mm = 1.0
[[layer]]
name = "muon"
kind = "muon"
z = [1500.0]
half_x = 100.0
half_y = 100.0
x0_frac = 0.0
material = "si"
thickness_mm = 1.0
resolution = 1.0
[[layer]]
name = "strips"
kind = "strip"
z = [1200.0]
stereo_deg = [5.0]
half_x = 100.0
half_y = 100.0
x0_frac = 0.0
material = "si"
thickness_mm = 1.0
resolution = 1.0
"""


def _muons(n: int, p: float) -> EventChunk:
    zeros = np.zeros(n)
    return EventChunk.from_columns(
        {
            "event_id": np.arange(n),
            "index": zeros,
            "pid": np.full(n, 13),
            "status": np.ones(n),
            "px": zeros,
            "py": zeros,
            "pz": np.full(n, p),
            "e": np.full(n, np.hypot(p, 0.10566)),
            "m": np.full(n, 0.10566),
            "vx": zeros,
            "vy": zeros,
            "vz": np.full(n, -10.0),
            "vt": zeros,
            "mother": np.full(n, -1),
            "prod_vertex": zeros,
            "end_vertex": zeros,
        }
    )


def test_scattering_angles_follow_highland(tmp_path: Path) -> None:
    path = tmp_path / "geometry.toml"
    path.write_text(_SCATTER_GEOMETRY)
    geo = load_geometry(path)
    n, p = 4000, 3.0
    result = transport(
        _muons(n, p), geo, FieldMap.from_magnet(geo.config.magnet), np.random.default_rng(3)
    )
    hits = result.hits
    real = hits["particle"] >= 0
    x = np.full((n, 4), np.nan)
    velo = [int(i) for i in geo.planes.of("velo")]
    for k, plane in enumerate(velo):
        sel = real & (hits["plane"] == plane)
        x[hits["particle"][sel], k] = hits["u"][sel]
    before = (x[:, 1] - x[:, 0]) / 100.0
    after = (x[:, 3] - x[:, 2]) / 100.0
    kink = after - before
    beta = p / np.hypot(p, 0.10566)
    expected = highland(np.array([p]), np.array([beta]), np.array([1.0]), np.array([0.05]))[0]
    assert np.nanstd(kink) == pytest.approx(expected, rel=0.05)
    assert abs(np.nanmean(kink)) < 4 * expected / np.sqrt(n)


def test_pions_decay_in_flight_at_the_expected_rate() -> None:
    geo = load_geometry()
    config = parse_generator_config(
        {"mode": "gun", "channel": "pi", "spectrum": {"kind": "log_p", "p_min": 2.0, "p_max": 2.01}}
    )
    chunk = concat_chunks(list(generate(config, 3000, 5)))
    result = transport(
        chunk, geo, FieldMap.from_magnet(geo.config.magnet), np.random.default_rng(5)
    )
    parts = result.particles
    primary = parts["process"] == 0
    decayed = primary & (parts["fate"] == DECAYED)
    # the probability to decay before the end of its path (z_end) for each pion
    bg = 2.0 / 0.13957
    dist = parts["path"][primary]
    expected = np.sum(-np.expm1(-dist / (bg * 7804.5)))
    assert decayed.sum() == pytest.approx(expected, abs=4 * np.sqrt(expected) + 3)
    daughters = parts["process"] == 1
    assert daughters.sum() == decayed.sum()
    # pi+ -> mu+ nu: the muon keeps the charge of its parent pion
    parent = parts["parent"][daughters]
    np.testing.assert_array_equal(parts["charge"][daughters], parts["charge"][parent])
    assert np.all(np.abs(parts["pid"][daughters]) == 13)


def test_acceptance_roughly_two_to_five_in_eta() -> None:
    geo = load_geometry()
    config = parse_generator_config(
        {
            "mode": "gun",
            "channel": "mu",
            "spectrum": {"kind": "log_p", "p_min": 10.0, "p_max": 50.0},
            "eta_min": 1.0,
            "eta_max": 6.5,
        }
    )
    chunk = concat_chunks(list(generate(config, 3000, 8)))
    result = transport(
        chunk, geo, FieldMap.from_magnet(geo.config.magnet), np.random.default_rng(8)
    )
    hits = result.hits
    t_planes = geo.planes.of("t")
    velo = geo.planes.of("velo")
    real = hits["particle"] >= 0
    n_t = np.bincount(hits["particle"][real & np.isin(hits["plane"], t_planes)], minlength=3000)
    n_v = np.bincount(hits["particle"][real & np.isin(hits["plane"], velo)], minlength=3000)
    p = np.hypot(np.hypot(chunk["px"], chunk["py"]), chunk["pz"])
    eta = np.arctanh(chunk["pz"] / p)
    seen = (n_t >= 8) & (n_v >= 3)
    inside = (eta > 2.3) & (eta < 4.6)
    assert seen[inside].mean() > 0.85
    assert seen[eta < 1.6].mean() < 0.1
    assert seen[eta > 5.6].mean() < 0.1


def test_same_seed_same_hits() -> None:
    geo = load_geometry()
    chunk = concat_chunks(list(generate(parse_generator_config({"mode": "gun"}), 50, 1)))
    field_map = FieldMap.from_magnet(geo.config.magnet)
    a = transport(chunk, geo, field_map, np.random.default_rng(1))
    b = transport(chunk, geo, field_map, np.random.default_rng(1))
    for key in a.hits:
        np.testing.assert_array_equal(a.hits[key], b.hits[key])


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ('kind = "pixel"', 'kind = "tpc"', "kind"),
        ("efficiency = 0.99", "efficiency = 1.5", "efficiency"),
        (
            'material = "si"\nthickness_mm = 0.5',
            'material = "unobtainium"\nthickness_mm = 0.5',
            "unobtainium",
        ),
        ("b0 = 1.05", "b0 = [1.05]", "b0"),
        ("stereo_deg = [0.0, 5.0, -5.0, 0.0]\n", "", "stereo_deg"),
    ],
)
def test_bad_geometry_fields_are_named(tmp_path: Path, old: str, new: str, fragment: str) -> None:
    from importlib import resources

    text = resources.files("flashlink.sim.detector").joinpath("geometry.toml").read_text()
    assert old in text
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(SimConfigError, match=fragment):
        load_geometry(path)


def test_missing_geometry_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(SimConfigError, match="cannot read"):
        load_geometry(tmp_path / "nope.toml")
