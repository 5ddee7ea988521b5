"""Reconstruction of one chunk: pattern recognition, Kalman fit, PV fit, PID, calorimeter, and
the truth matching that turns the result into training tables.

Output tables (dicts of numpy columns, one row per object; documented in
:data:`TRACK_COLUMNS` and friends):

* ``tracks``: reconstructed long / upstream / downstream tracks with the state at the point of
  closest approach to the beam line, its 5x5 covariance (15 upper-triangle entries), chi2,
  ndof, PID (RICH DLLs, isMuon, calorimeter energy) and the truth match (LHCb's 70% hit purity
  rule; a decay-in-flight daughter's hits count for its parent) or ``ghost = 1``;
* ``particles``: every transported generator particle with its truth, its hit counts per
  sub-detector and the type and key of the track that found it (0 / -1 if none): the input of
  acceptance and efficiency models;
* ``pvs``: primary vertices (fitted, or for events with too few tracks, such as particle-gun
  events, the true vertex smeared by a typical resolution, flagged ``source = 1``, as Lamarr
  does with its PV smearing table);
* ``neutrals``: calorimeter deposits not matched to a track (photons).
"""

from __future__ import annotations

__all__ = ["NEUTRAL_COLUMNS", "PARTICLE_COLUMNS", "PV_COLUMNS", "TRACK_COLUMNS", "reconstruct"]

from typing import Any

import numpy as np
import numpy.typing as npt

from flashlink.sim.detector.field import FieldMap, propagate
from flashlink.sim.detector.geometry import Geometry
from flashlink.sim.detector.kalman import fit_tracks, tracking_planes
from flashlink.sim.detector.patrec import EventHits, TrackCandidate, find_tracks
from flashlink.sim.detector.pid import MASSES, is_muon, rich_dll, rich_photons
from flashlink.sim.detector.transport import TransportResult
from flashlink.sim.detector.vertex import fit_primary_vertices
from flashlink.sim.generation.events import EventChunk

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Table = dict[str, npt.NDArray[Any]]

_COV_INDEX = [(i, j) for i in range(5) for j in range(i, 5)]
TRACK_COLUMNS: dict[str, str] = {
    "event_id": "event number",
    "key": "track number in its event",
    "type": "1 long (VELO+T), 2 upstream (VELO+UT), 3 downstream (UT+T)",
    "x": "x at the point of closest approach to the beam line (mm)",
    "y": "y there (mm)",
    "z": "z there (mm)",
    "tx": "dx/dz",
    "ty": "dy/dz",
    "qop": "charge / momentum (1/GeV)",
    **{f"cov_{i}{j}": f"covariance of (x, y, tx, ty, q/p) entries {i},{j}" for i, j in _COV_INDEX},
    "chi2": "track-fit chi2",
    "ndof": "degrees of freedom (measurements - 5)",
    "chi2ndof": "chi2 / ndof",
    "p": "momentum (GeV)",
    "pt": "transverse momentum (GeV)",
    "eta": "pseudorapidity",
    "phi": "azimuth",
    "charge": "+1 or -1",
    "n_velo": "VELO hits",
    "n_ut": "UT hits",
    "n_t": "T-station hits",
    "ghost": "1 if no generator particle made >= 70% of the hits",
    "purity": "fraction of hits from the matched particle",
    "mc_index": "generator index of the matched particle (-1 for ghosts)",
    "mc_pid": "PDG id of the matched particle (0 for ghosts)",
    "mc_mother": "generator index of its mother (-1: none or ghost)",
    "mc_gmother": "generator index of its grandmother (-1: none or ghost)",
    "true_x": "true x at the fitted z (mm)",
    "true_y": "true y at the fitted z (mm)",
    "true_tx": "true dx/dz at the origin",
    "true_ty": "true dy/dz at the origin",
    "true_qop": "true q/p at the origin (1/GeV)",
    "rich_photons": "detected Cherenkov photons",
    "dll_e": "RICH (+ calorimeter) DLL(e - pi)",
    "dll_mu": "RICH DLL(mu - pi)",
    "dll_k": "RICH DLL(K - pi)",
    "dll_p": "RICH DLL(p - pi)",
    "is_muon": "LHCb isMuon",
    "n_muon_stations": "muon stations with a hit in the field of interest",
    "calo_e": "ECAL energy within the cluster radius of the extrapolated track (GeV)",
    "e_over_p": "calo_e / p",
    "n_tracks_event": "reconstructed tracks in the event",
}
PARTICLE_COLUMNS: dict[str, str] = {
    "event_id": "event number",
    "gen_index": "index of the particle in the generator event",
    "pid": "PDG id",
    "charge": "charge",
    "ox": "origin x (mm)",
    "oy": "origin y (mm)",
    "oz": "origin z (mm)",
    "px": "momentum x at the origin (GeV)",
    "py": "momentum y (GeV)",
    "pz": "momentum z (GeV)",
    "p": "momentum (GeV)",
    "eta": "pseudorapidity",
    "phi": "azimuth",
    "n_velo": "VELO hits (its own and its decay daughter's)",
    "n_ut": "UT hits",
    "n_t": "T-station hits",
    "fate": "0 left, 1 absorbed, 2 decayed in flight, 3 stopped in the ECAL, 4 ranged out",
    "reco_type": "type of the best matched track (0: not reconstructed)",
    "track_key": "key of that track (-1: none)",
    "n_tracks_event": "reconstructed tracks in the event",
}
PV_COLUMNS: dict[str, str] = {
    "event_id": "event number",
    "x": "x (mm)",
    "y": "y (mm)",
    "z": "z (mm)",
    "cov_xx": "variance of x",
    "cov_yy": "variance of y",
    "cov_zz": "variance of z",
    "n_tracks": "tracks with weight > 0.5",
    "chi2": "fit chi2",
    "source": "0 fitted from tracks, 1 true vertex smeared (too few tracks)",
    "true_x": "true x",
    "true_y": "true y",
    "true_z": "true z",
}
NEUTRAL_COLUMNS: dict[str, str] = {
    "event_id": "event number",
    "x": "cluster x at the ECAL (mm)",
    "y": "cluster y (mm)",
    "e": "measured energy (GeV)",
    "mc_index": "generator index of the photon",
}
#: PV resolution used when a vertex cannot be fitted (typical LHCb values for ~30 tracks, mm)
_PV_SMEAR = np.array([0.010, 0.010, 0.060])


def _event_hits(result: TransportResult) -> list[EventHits]:
    hits = result.hits
    order = np.argsort(hits["event"], kind="stable")
    bounds = np.searchsorted(hits["event"][order], np.arange(result.n_events + 1))
    out = []
    for e in range(result.n_events):
        ids = order[bounds[e] : bounds[e + 1]]
        out.append(EventHits(ids, hits["plane"][ids], hits["u"][ids], hits["v"][ids]))
    return out


def reconstruct(
    chunk: EventChunk,
    result: TransportResult,
    geo: Geometry,
    field_map: FieldMap,
    rng: np.random.Generator,
) -> dict[str, Table]:
    """Reconstruct a transported chunk; return the tracks, particles, pvs and neutrals tables."""
    pl = geo.planes
    events = _event_hits(result)
    cands: list[TrackCandidate] = []
    cand_event: list[int] = []
    velo_lines: list[list[Array]] = []
    for e, (found, velo) in enumerate(find_tracks(geo, field_map, events)):
        cands.extend(found)
        cand_event.extend([e] * len(found))
        velo_lines.append([p for _, p in velo])
    event_idx = np.asarray(cand_event, dtype=np.int64)
    n = len(cands)
    hits = result.hits
    tp = tracking_planes(geo)
    col = np.full(len(pl), -1)
    col[tp] = np.arange(len(tp))
    u = np.full((n, len(tp)), np.nan)
    v = np.full((n, len(tp)), np.nan)
    for c, cand in enumerate(cands):
        h = np.asarray(cand.hits, dtype=np.int64)
        cols = col[hits["plane"][h]]
        keep = cols >= 0
        u[c, cols[keep]] = hits["u"][h[keep]]
        v[c, cols[keep]] = hits["v"][h[keep]]
    has = np.isfinite(u) | np.isfinite(v)
    first = np.argmax(has, axis=1) if n else np.zeros(0, np.int64)
    seeds = np.array([c.seed for c in cands]).reshape(n, 5)
    z_seed = np.array([c.z_seed for c in cands])
    seeds = propagate(field_map, seeds, z_seed, pl.z[tp][first]) if n else seeds
    mass = np.full(n, MASSES["pi"])
    fit = fit_tracks(geo, field_map, u=u, v=v, seed=seeds, mass=mass)
    tracks = _track_table(chunk, result, geo, cands=cands, event_idx=event_idx, fit=fit, rng=rng)
    particles = _particle_table(result, geo, tracks)
    pvs = _pv_table(chunk, result, velo_lines, rng)
    neutrals = _neutral_table(result, geo, tracks)
    return {"tracks": tracks, "particles": particles, "pvs": pvs, "neutrals": neutrals}


def _roots(parent: IntArray) -> IntArray:
    return np.where(parent >= 0, parent, np.arange(len(parent)))


def _track_table(  # noqa: PLR0915 - builds one flat table, column by column
    chunk: EventChunk,
    result: TransportResult,
    geo: Geometry,
    *,
    cands: list[TrackCandidate],
    event_idx: IntArray,
    fit: Any,
    rng: np.random.Generator,
) -> Table:
    pl = geo.planes
    parts = result.particles
    hits = result.hits
    n = len(cands)
    root = _roots(parts["parent"])
    mc_row = np.full(n, -1, np.int64)
    rich_row = np.full(n, -1, np.int64)
    purity = np.zeros(n)
    counts = np.zeros((n, 3), np.int64)
    velo, ut, t = pl.of("velo"), pl.of("ut"), pl.of("t")
    for c, cand in enumerate(cands):
        h = np.asarray(cand.hits, dtype=np.int64)
        planes = hits["plane"][h]
        counts[c] = [
            np.isin(planes, velo).sum(),
            np.isin(planes, ut).sum(),
            np.isin(planes, t).sum(),
        ]
        owner = hits["particle"][h]
        real = owner >= 0
        owners = np.where(real, root[np.maximum(owner, 0)], -1)
        vals, cnt = np.unique(owners[real], return_counts=True)
        if len(vals):
            k = int(np.argmax(cnt))
            purity[c] = cnt[k] / len(h)
            if purity[c] >= 0.7:
                mc_row[c] = vals[k]
        before = (
            owner[real & (planes < ut[0])] if cand.kind != 3 else owner[real & np.isin(planes, ut)]
        )
        if len(before):
            vb, cb = np.unique(before, return_counts=True)
            rich_row[c] = vb[np.argmax(cb)]
    state, cov = fit.state, fit.cov
    qop = state[:, 4]
    p = 1.0 / np.maximum(np.abs(qop), 1e-9)
    tx, ty = state[:, 2], state[:, 3]
    pz = p / np.sqrt(1 + tx**2 + ty**2)
    px, py = tx * pz, ty * pz
    pt = np.hypot(px, py)
    n_tracks = np.bincount(event_idx, minlength=result.n_events)[event_idx].astype(np.float64)
    # RICH
    rich = geo.config.rich
    has_rich = rich_row >= 0
    safe = np.maximum(rich_row, 0)
    p_true = np.where(has_rich, parts["p_rich"][safe], 1e-3)
    m_true = np.where(has_rich, parts["mass"][safe], MASSES["pi"])
    j_rich = int(np.flatnonzero(pl.name == "rich")[0])
    xr = state[:, 0] + tx * (pl.z[j_rich] - fit.z)
    yr = state[:, 1] + ty * (pl.z[j_rich] - fit.z)
    geometric = (np.abs(xr) < pl.half_x[j_rich]) & (np.abs(yr) < pl.half_y[j_rich])
    inside = np.where(has_rich, parts["rich_inside"][safe] == 1, geometric)
    inside &= np.array([c.kind != 3 for c in cands], dtype=bool) | has_rich
    n_ph, angles = rich_photons(
        rng, rich, p_true=p_true, mass=m_true, inside=inside, n_tracks=n_tracks
    )
    dll = rich_dll(rich, p_reco=p, counts=n_ph, angles=angles, inside=inside, n_tracks=n_tracks)
    # calorimeter and muon system, extrapolated straight from the last fitted state
    calo_e, ecal_in = _calo_energy(result, geo, fit, event_idx)
    e_over_p = calo_e / p
    sigma_e = 0.05 + geo.config.ecal.stochastic / np.sqrt(np.maximum(p, 0.1))
    calo_term = (
        -0.5 * ((e_over_p - 1.0) / sigma_e) ** 2
        - np.log(sigma_e * np.sqrt(2 * np.pi))
        - (np.log(1 / 0.15) - e_over_p / 0.15)
    )
    dll_e = dll["e"] + np.where(ecal_in, np.clip(calo_term, -20, 20), 0.0)
    muon, n_st = _muon_id(result, geo, fit, event_idx, p)
    gen_index = np.where(mc_row >= 0, parts["gen_index"][np.maximum(mc_row, 0)], -1)
    mc_pid = np.where(mc_row >= 0, parts["pid"][np.maximum(mc_row, 0)], 0)
    r = np.maximum(mc_row, 0)
    t_tx = parts["px"][r] / parts["pz"][r]
    t_ty = parts["py"][r] / parts["pz"][r]
    t_p = np.sqrt(parts["px"][r] ** 2 + parts["py"][r] ** 2 + parts["pz"][r] ** 2)
    keys = np.zeros(n, np.int64)
    for e in np.unique(event_idx):
        sel = event_idx == e
        keys[sel] = np.arange(sel.sum())
    table: Table = {
        "event_id": result.event_ids[event_idx] if n else np.zeros(0, np.int64),
        "key": keys,
        "type": np.array([c.kind for c in cands], dtype=np.int64),
        "x": state[:, 0],
        "y": state[:, 1],
        "z": fit.z,
        "tx": tx,
        "ty": ty,
        "qop": qop,
    }
    for i, j in _COV_INDEX:
        table[f"cov_{i}{j}"] = cov[:, i, j]
    table.update(
        {
            "chi2": fit.chi2,
            "ndof": fit.ndof,
            "chi2ndof": fit.chi2 / np.maximum(fit.ndof, 1),
            "p": p,
            "pt": pt,
            "eta": np.arcsinh(pz / np.maximum(pt, 1e-9)),
            "phi": np.arctan2(py, px),
            "charge": np.sign(qop).astype(np.int64),
            "n_velo": counts[:, 0],
            "n_ut": counts[:, 1],
            "n_t": counts[:, 2],
            "ghost": (mc_row < 0).astype(np.int64),
            "purity": purity,
            "mc_index": gen_index,
            "mc_pid": mc_pid,
            "true_x": parts["ox"][r] + t_tx * (fit.z - parts["oz"][r]),
            "true_y": parts["oy"][r] + t_ty * (fit.z - parts["oz"][r]),
            "true_tx": t_tx,
            "true_ty": t_ty,
            "true_qop": parts["charge"][r] / t_p,
            "rich_photons": n_ph,
            "dll_e": dll_e,
            "dll_mu": dll["mu"],
            "dll_k": dll["K"],
            "dll_p": dll["p"],
            "is_muon": muon.astype(np.int64),
            "n_muon_stations": n_st,
            "calo_e": calo_e,
            "e_over_p": e_over_p,
            "n_tracks_event": n_tracks.astype(np.int64),
        }
    )
    offsets = chunk.offsets()
    gen_row = offsets[event_idx] + np.maximum(gen_index, 0)
    mother = np.where(gen_index >= 0, chunk["mother"][gen_row], -1)
    gmother = np.where(mother >= 0, chunk["mother"][offsets[event_idx] + np.maximum(mother, 0)], -1)
    table["mc_mother"] = mother.astype(np.int64)
    table["mc_gmother"] = gmother.astype(np.int64)
    table["_mc_row"] = mc_row
    table["_event"] = event_idx
    table["_ok"] = fit.ok
    table["_last_x"] = fit.last_state[:, 0]
    table["_last_y"] = fit.last_state[:, 1]
    table["_last_tx"] = fit.last_state[:, 2]
    table["_last_ty"] = fit.last_state[:, 3]
    table["_last_z"] = fit.last_z
    return table


def _extrapolate(fit: Any, z: float) -> tuple[Array, Array]:
    s, z0 = fit.last_state, fit.last_z
    return s[:, 0] + s[:, 2] * (z - z0), s[:, 1] + s[:, 3] * (z - z0)


def _calo_energy(
    result: TransportResult, geo: Geometry, fit: Any, event_idx: IntArray
) -> tuple[Array, npt.NDArray[np.bool_]]:
    pl = geo.planes
    j = int(np.flatnonzero(pl.name == "ecal")[0])
    x, y = _extrapolate(fit, float(pl.z[j]))
    inside = (
        (np.abs(x) < pl.half_x[j]) & (np.abs(y) < pl.half_y[j]) & (x**2 + y**2 > pl.hole_r[j] ** 2)
    )
    dep = result.deposits
    order = np.argsort(dep["event"], kind="stable")
    dev = dep["event"][order]
    dx, dy, de = dep["x"][order], dep["y"][order], dep["e"][order]
    lo = np.searchsorted(dev, event_idx, "left")
    hi = np.searchsorted(dev, event_idx, "right")
    r2 = geo.config.ecal.cluster_radius**2
    out = np.zeros(len(x))
    for t in np.flatnonzero(inside & (hi > lo)):
        sl = slice(lo[t], hi[t])
        near = (dx[sl] - x[t]) ** 2 + (dy[sl] - y[t]) ** 2 < r2
        out[t] = de[sl][near].sum()
    return out, inside


def _muon_id(
    result: TransportResult, geo: Geometry, fit: Any, event_idx: IntArray, p: Array
) -> tuple[npt.NDArray[np.bool_], IntArray]:
    pl = geo.planes
    stations = pl.of("muon")
    hits = result.hits
    px = np.zeros((len(p), len(stations)))
    py = np.zeros((len(p), len(stations)))
    station_hits, hit_events = [], []
    for k, j in enumerate(stations):
        px[:, k], py[:, k] = _extrapolate(fit, float(pl.z[j]))
        sel = hits["plane"] == j
        station_hits.append((hits["u"][sel], hits["v"][sel]))
        hit_events.append(hits["event"][sel])
    return is_muon(
        geo.config.muon,
        p=p,
        pred_x=px,
        pred_y=py,
        station_hits=station_hits,
        track_event=event_idx,
        hit_events=hit_events,
    )


def _particle_table(result: TransportResult, geo: Geometry, tracks: Table) -> Table:
    parts = result.particles
    pl = geo.planes
    hits = result.hits
    root = _roots(parts["parent"])
    n = len(parts["pid"])
    real = hits["particle"] >= 0
    owner = root[hits["particle"][real]]
    planes = hits["plane"][real]
    counts = {
        name: np.bincount(owner[np.isin(planes, pl.of(name))], minlength=n)
        for name in ("velo", "ut", "t")
    }
    reco_type = np.zeros(n, np.int64)
    track_key = np.full(n, -1, np.int64)
    # best track per particle: long before downstream before upstream, then the purest
    rank = np.array([0, 3, 1, 2])[tracks["type"]] * 10 + tracks["purity"]
    order = np.argsort(-rank, kind="stable")
    matched = tracks["_mc_row"][order]
    for t, row in zip(order, matched, strict=True):
        if row >= 0 and reco_type[row] == 0:
            reco_type[row] = tracks["type"][t]
            track_key[row] = tracks["key"][t]
    primary = parts["process"] == 0
    p = np.sqrt(parts["px"] ** 2 + parts["py"] ** 2 + parts["pz"] ** 2)
    pt = np.hypot(parts["px"], parts["py"])
    n_tracks = np.bincount(tracks["_event"], minlength=result.n_events)[parts["event"]]
    # a particle counts as decayed in flight if it decayed (its daughter's hits are its own)
    table: Table = {
        "event_id": result.event_ids[parts["event"]],
        "gen_index": parts["gen_index"],
        "pid": parts["pid"],
        "charge": parts["charge"].astype(np.int64),
        "ox": parts["ox"],
        "oy": parts["oy"],
        "oz": parts["oz"],
        "px": parts["px"],
        "py": parts["py"],
        "pz": parts["pz"],
        "p": p,
        "eta": np.arcsinh(parts["pz"] / np.maximum(pt, 1e-9)),
        "phi": np.arctan2(parts["py"], parts["px"]),
        "n_velo": counts["velo"],
        "n_ut": counts["ut"],
        "n_t": counts["t"],
        "fate": parts["fate"],
        "reco_type": reco_type,
        "track_key": track_key,
        "n_tracks_event": n_tracks.astype(np.int64),
    }
    return {k: v[primary] for k, v in table.items()}


def _pv_table(
    chunk: EventChunk,
    result: TransportResult,
    velo_lines: list[list[Array]],
    rng: np.random.Generator,
) -> Table:
    offsets = chunk.offsets()
    rows: list[list[float]] = []
    for e, lines in enumerate(velo_lines):
        lo = offsets[e]
        truth = [float(chunk["vx"][lo]), float(chunk["vy"][lo]), float(chunk["vz"][lo])]
        pvs = fit_primary_vertices(np.array(lines).reshape(-1, 4))
        if pvs:
            for vertex, cov, chi2, n_tr in pvs:
                rows.append([e, *vertex, cov[0, 0], cov[1, 1], cov[2, 2], n_tr, chi2, 0, *truth])
        else:
            smeared = np.asarray(truth) + rng.normal(0, 1, 3) * _PV_SMEAR
            rows.append([e, *smeared, *(_PV_SMEAR**2), 0, 0.0, 1, *truth])
    arr = np.array(rows, dtype=np.float64).reshape(-1, 13)
    names = list(PV_COLUMNS)
    table: Table = {name: arr[:, k] for k, name in enumerate(names)}
    table["event_id"] = result.event_ids[arr[:, 0].astype(np.int64)]
    table["n_tracks"] = arr[:, 7].astype(np.int64)
    table["source"] = arr[:, 9].astype(np.int64)
    table["_event"] = arr[:, 0].astype(np.int64)
    return table


def _neutral_table(result: TransportResult, geo: Geometry, tracks: Table) -> Table:
    dep = result.deposits
    photon = dep["particle"] <= -2
    ev, x, y, e = dep["event"][photon], dep["x"][photon], dep["y"][photon], dep["e"][photon]
    pl = geo.planes
    j = int(np.flatnonzero(pl.name == "ecal")[0])
    dz = pl.z[j] - tracks["_last_z"]
    tx_e = tracks["_last_x"] + tracks["_last_tx"] * dz
    ty_e = tracks["_last_y"] + tracks["_last_ty"] * dz
    r2 = geo.config.ecal.cluster_radius**2
    keep = np.ones(len(ev), bool)
    t_event = tracks["_event"]
    for k in range(len(ev)):
        sel = t_event == ev[k]
        if sel.any() and np.any((tx_e[sel] - x[k]) ** 2 + (ty_e[sel] - y[k]) ** 2 < r2):
            keep[k] = False
    return {
        "event_id": result.event_ids[ev[keep]],
        "x": x[keep],
        "y": y[keep],
        "e": e[keep],
        "mc_index": -2 - dep["particle"][photon][keep],
    }
