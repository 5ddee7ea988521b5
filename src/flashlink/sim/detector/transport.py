"""Step-by-step transport of generated particles through the detector (the "detailed" part).

All particles of a chunk of events travel together, plane by plane in z (numpy over
particles). Between planes the state (x, y, tx, ty, q/p) is stepped with Runge-Kutta through
the field map; at each plane a particle inside the active area may leave a hit (efficiency,
Gaussian resolution) and then crosses the plane's material: multiple scattering, ionisation
loss with Landau fluctuations, bremsstrahlung for electrons, hadronic absorption. Charged
pions and kaons decay in flight (pi -> mu nu; K -> mu nu, pi pi0 as two-body decays; the other
~16% of kaon decays end the track); daughters are created at the decay point and transported
on. Photons fly straight to the calorimeter. Random noise hits are added per plane.

The loop is over planes (53 in the default geometry) and Runge-Kutta sub-steps; everything
inside it is vectorised, so the cost per particle falls with the chunk size (the benchmark
``benchmarks/sim_detailed.py`` measures it).
"""

from __future__ import annotations

__all__ = ["SPECIES", "TransportResult", "transport"]

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from flashlink.sim.detector.field import MAX_SLOPE, FieldMap, propagate
from flashlink.sim.detector.geometry import ECAL, MUON, PIXEL, RICH, STRIP, Ecal, Geometry
from flashlink.sim.detector.materials import (
    MOYAL_MEAN,
    absorption_probability,
    bremsstrahlung_fraction,
    highland,
    landau_parameters,
    sample_moyal,
)
from flashlink.sim.generation.events import EventChunk

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: |pid| -> (mass GeV, c tau mm or inf, hadronic absorption factor); charge sign from the pid
SPECIES: dict[int, tuple[float, float, float]] = {
    11: (0.51099895e-3, np.inf, 0.0),
    13: (0.1056583755, np.inf, 0.0),
    211: (0.13957039, 7804.5, 0.8),
    321: (0.493677, 3711.4, 0.7),
    2212: (0.93827209, np.inf, 1.0),
}
#: fates of a transported particle
LEFT, ABSORBED, DECAYED, STOPPED_CALO, RANGED_OUT = range(5)
#: K+ decays simulated as two-body: (branching, daughter |pid|); the rest end the track
_KAON_DECAYS = ((0.6356, 13), (0.2067, 211))
_MIN_P = 0.2  # GeV: softer particles curl up in the fringe field before the first stations
_WORLD = 5000.0  # mm: |x| or |y| beyond this leaves the detector


def _charge(pid: IntArray) -> Array:
    """Electric charge of the tracked species (leptons: negative for positive pid)."""
    a = np.abs(pid)
    sign = np.sign(pid).astype(np.float64)
    return np.where((a == 11) | (a == 13), -sign, sign)


@dataclass
class TransportResult:
    """Everything the detector recorded for one chunk, plus the truth of what happened."""

    #: transported particles (generator ones first, then decay daughters), keyed by row
    particles: dict[str, npt.NDArray[Any]]
    #: hits: event (chunk-local), plane, u, v (second coordinate of pixel/muon pads, else nan),
    #: particle row (-1 for noise)
    hits: dict[str, npt.NDArray[Any]]
    #: calorimeter deposits: event, x, y, e (measured), particle row
    deposits: dict[str, npt.NDArray[Any]]
    n_events: int
    event_ids: IntArray
    stats: dict[str, float] = field(default_factory=dict)


class _Store:
    """Growable per-particle arrays (decays append daughters)."""

    NAMES = ("x", "y", "tx", "ty", "qop", "z", "mass", "charge", "path", "decay_at", "p_rich")
    INTS = ("pid", "event", "gen_index", "parent", "fate", "alive", "process", "rich_inside")

    def __init__(self, n: int) -> None:
        cap = max(2 * n, 16)
        self.n = 0
        self.f = {k: np.zeros(cap) for k in self.NAMES}
        self.i = {k: np.zeros(cap, np.int64) for k in self.INTS}
        self.origin = np.zeros((cap, 3))
        self.p0 = np.zeros((cap, 3))

    def add(self, count: int) -> slice:
        cap = len(self.f["x"])
        if self.n + count > cap:
            grow = max(cap, count)
            for d in (self.f, self.i):
                for k, v in d.items():
                    d[k] = np.concatenate([v, np.zeros(grow, v.dtype)])
            self.origin = np.concatenate([self.origin, np.zeros((grow, 3))])
            self.p0 = np.concatenate([self.p0, np.zeros((grow, 3))])
        sl = slice(self.n, self.n + count)
        self.n += count
        return sl


def _momentum(s: _Store, idx: IntArray) -> Array:
    return np.abs(1.0 / s.f["qop"][idx])


def _two_body(
    rng: np.random.Generator,
    parent_p: Array,
    parent_dir: Array,
    *,
    m_parent: Array,
    m1: Array,
    m2: Array,
) -> tuple[Array, Array]:
    """Momentum magnitude and direction (n, 3) of daughter 1 of isotropic two-body decays."""
    n = len(parent_p)
    q = np.sqrt((m_parent**2 - (m1 + m2) ** 2) * (m_parent**2 - (m1 - m2) ** 2)) / (2 * m_parent)
    cos_t = rng.uniform(-1, 1, n)
    phi = rng.uniform(0, 2 * np.pi, n)
    sin_t = np.sqrt(1 - cos_t**2)
    rest = np.stack([q * sin_t * np.cos(phi), q * sin_t * np.sin(phi), q * cos_t], axis=1)
    e_rest = np.sqrt(q**2 + m1**2)
    # boost along the parent direction
    e_parent = np.sqrt(parent_p**2 + m_parent**2)
    gamma, bg = e_parent / m_parent, parent_p / m_parent
    along = (rest * parent_dir).sum(axis=1)
    lab_along = gamma * along + bg * e_rest
    lab = rest + (lab_along - along)[:, None] * parent_dir
    p = np.linalg.norm(lab, axis=1)
    return p, lab / p[:, None]


def _decay(rng: np.random.Generator, s: _Store, idx: IntArray) -> IntArray:
    """Decay particles ``idx`` at their current state; return the rows of the daughters."""
    s.i["alive"][idx] = 0
    s.i["fate"][idx] = DECAYED
    apid = np.abs(s.i["pid"][idx])
    u = rng.random(len(idx))
    daughter = np.where(apid == 211, 13, 0)
    kaon = apid == 321
    daughter = np.where(kaon & (u < _KAON_DECAYS[0][0]), 13, daughter)
    daughter = np.where(
        kaon & (u >= _KAON_DECAYS[0][0]) & (u < _KAON_DECAYS[0][0] + _KAON_DECAYS[1][0]),
        211,
        daughter,
    )
    keep = daughter > 0
    idx, daughter = idx[keep], daughter[keep]
    if len(idx) == 0:
        return np.zeros(0, np.int64)
    m_parent = s.f["mass"][idx]
    m1 = np.where(daughter == 13, SPECIES[13][0], SPECIES[211][0])
    m2 = np.where(daughter == 13, 0.0, 0.1349768)  # nu or pi0
    tx, ty = s.f["tx"][idx], s.f["ty"][idx]
    norm = np.sqrt(1 + tx**2 + ty**2)
    direction = np.stack([tx, ty, np.ones_like(tx)], axis=1) / norm[:, None]
    p, d = _two_body(rng, _momentum(s, idx), direction, m_parent=m_parent, m1=m1, m2=m2)
    forward = d[:, 2] > 0.05
    idx, daughter, p, d, m1 = idx[forward], daughter[forward], p[forward], d[forward], m1[forward]
    rows = np.arange(s.add(len(idx)).start, s.n)
    charge = s.f["charge"][idx]
    for k in ("x", "y", "z"):
        s.f[k][rows] = s.f[k][idx]
    s.f["tx"][rows] = d[:, 0] / d[:, 2]
    s.f["ty"][rows] = d[:, 1] / d[:, 2]
    s.f["qop"][rows] = charge / p
    s.f["mass"][rows] = m1
    s.f["charge"][rows] = charge
    s.f["decay_at"][rows] = np.inf  # second-generation decays (K -> pi -> mu) are neglected
    s.i["pid"][rows] = np.where(daughter == 13, -13 * charge, 211 * charge).astype(np.int64)
    s.i["event"][rows] = s.i["event"][idx]
    s.i["gen_index"][rows] = -1
    s.i["parent"][rows] = idx
    s.i["alive"][rows] = 1
    s.i["process"][rows] = 1
    s.i["fate"][rows] = LEFT
    s.origin[rows] = np.stack([s.f["x"][idx], s.f["y"][idx], s.f["z"][idx]], axis=1)
    s.p0[rows] = p[:, None] * d
    return rows


def _material(rng: np.random.Generator, geo: Geometry, j: int, s: _Store, idx: IntArray) -> Array:
    """Apply plane ``j``'s material to particles ``idx``; return their ionisation loss (GeV)."""
    pl = geo.planes
    tx, ty = s.f["tx"][idx], s.f["ty"][idx]
    norm = np.sqrt(1 + tx**2 + ty**2)
    p = _momentum(s, idx)
    mass, charge = s.f["mass"][idx], s.f["charge"][idx]
    energy = np.sqrt(p**2 + mass**2)
    beta = p / energy
    theta0 = highland(p, beta, charge, pl.x0_frac[j] * norm)
    # correlated slope kicks with the covariance the Kalman fit uses (LHCb's MS noise matrix)
    c_xx = theta0**2 * norm**2 * (1 + tx**2)
    c_yy = theta0**2 * norm**2 * (1 + ty**2)
    c_xy = theta0**2 * norm**2 * tx * ty
    g1, g2 = rng.standard_normal((2, len(idx)))
    l11 = np.sqrt(c_xx)
    l21 = c_xy / l11
    l22 = np.sqrt(np.maximum(c_yy - l21**2, 0))
    s.f["tx"][idx] = tx + l11 * g1
    s.f["ty"][idx] = ty + l21 * g1 + l22 * g2
    mpv, xi = landau_parameters(
        p / mass,
        charge,
        z_over_a=pl.z_over_a[j],
        ion=pl.mean_excitation[j],
        grammage=pl.grammage[j] * norm,
        density=pl.density[j],
    )
    loss = np.minimum(mpv + xi * sample_moyal(rng, len(idx)), energy)
    e_new = energy - loss
    electron = np.abs(s.i["pid"][idx]) == 11
    if electron.any():
        e_new[electron] *= bremsstrahlung_fraction(rng, pl.x0_frac[j] * norm[electron])
    p_new = np.sqrt(np.maximum(e_new**2 - mass**2, 0.0))
    stopped = p_new < 0.05
    s.f["qop"][idx] = charge / np.maximum(p_new, 1e-3)
    dead = idx[stopped]
    s.i["alive"][dead] = 0
    s.i["fate"][dead] = RANGED_OUT
    factor = np.array([SPECIES[int(a)][2] for a in np.abs(s.i["pid"][idx])])
    absorbed = rng.random(len(idx)) < absorption_probability(pl.lambda_frac[j] * norm, factor)
    absorbed &= ~stopped
    s.i["alive"][idx[absorbed]] = 0
    s.i["fate"][idx[absorbed]] = ABSORBED
    return loss


def _expected_loss(
    geo: Geometry, j: int, p: Array, *, mass: Array, charge: Array, norm: Array
) -> Array:
    pl = geo.planes
    mpv, xi = landau_parameters(
        p / mass,
        charge,
        z_over_a=pl.z_over_a[j],
        ion=pl.mean_excitation[j],
        grammage=pl.grammage[j] * norm,
        density=pl.density[j],
    )
    return mpv + MOYAL_MEAN * xi


def _initial_store(chunk: EventChunk, event_of_row: IntArray, rng: np.random.Generator) -> _Store:
    """The tracked generator particles: final-state e, mu, pi, K, p going forward."""
    pid = chunk["pid"].astype(np.int64)
    px, py, pz = chunk["px"], chunk["py"], chunk["pz"]
    p = np.sqrt(px**2 + py**2 + pz**2)
    tracked = (chunk["status"] == 1) & np.isin(np.abs(pid), list(SPECIES)) & (pz > 0) & (p > _MIN_P)
    rows = np.flatnonzero(tracked)
    s = _Store(len(rows))
    sl = s.add(len(rows))
    s.f["x"][sl], s.f["y"][sl], s.f["z"][sl] = (
        chunk["vx"][rows],
        chunk["vy"][rows],
        chunk["vz"][rows],
    )
    s.f["tx"][sl], s.f["ty"][sl] = px[rows] / pz[rows], py[rows] / pz[rows]
    charge = _charge(pid[rows])
    s.f["qop"][sl] = charge / p[rows]
    s.f["charge"][sl] = charge
    table = np.array([SPECIES[int(a)] for a in np.abs(pid[rows])]).reshape(-1, 3)
    s.f["mass"][sl] = table[:, 0]
    s.f["decay_at"][sl] = rng.exponential(1.0, len(rows)) * table[:, 1] * p[rows] / table[:, 0]
    s.i["pid"][sl] = pid[rows]
    s.i["event"][sl] = event_of_row[rows]
    s.i["gen_index"][sl] = chunk["index"][rows]
    s.i["parent"][sl] = -1
    s.i["alive"][sl] = 1
    s.origin[sl] = np.stack([chunk["vx"][rows], chunk["vy"][rows], chunk["vz"][rows]], axis=1)
    s.p0[sl] = np.stack([px[rows], py[rows], pz[rows]], axis=1)

    return s


def transport(
    chunk: EventChunk, geo: Geometry, field_map: FieldMap, rng: np.random.Generator
) -> TransportResult:
    """Transport the final-state particles of ``chunk`` through the detector."""
    offsets = chunk.offsets()
    n_events = len(offsets) - 1
    event_of_row = np.repeat(np.arange(n_events), np.diff(offsets))
    s = _initial_store(chunk, event_of_row, rng)
    hit_cols: dict[str, list[npt.NDArray[Any]]] = {
        k: [] for k in ("event", "plane", "u", "v", "particle")
    }
    dep_cols: dict[str, list[npt.NDArray[Any]]] = {
        k: [] for k in ("event", "x", "y", "e", "particle")
    }
    pl = geo.planes
    for j in range(len(pl)):
        zj = pl.z[j]
        active = np.flatnonzero(s.i["alive"][: s.n].astype(bool) & (s.f["z"][: s.n] < zj))
        if len(active):
            norm = np.sqrt(1 + s.f["tx"][active] ** 2 + s.f["ty"][active] ** 2)
            step = (zj - s.f["z"][active]) * norm
            decays = s.f["path"][active] + step > s.f["decay_at"][active]
            if decays.any():
                d = active[decays]
                frac = (s.f["decay_at"][d] - s.f["path"][d]) / step[decays]
                z_dec = s.f["z"][d] + frac * (zj - s.f["z"][d])
                _move(field_map, s, d, z_dec)
                daughters = _decay(rng, s, d)
                active = np.concatenate([active[~decays], daughters])
            _move(field_map, s, active, np.full(len(active), zj))
            x, y = s.f["x"][active], s.f["y"][active]
            gone = (np.abs(x) > _WORLD) | (np.abs(y) > _WORLD)
            gone |= np.maximum(np.abs(s.f["tx"][active]), np.abs(s.f["ty"][active])) >= MAX_SLOPE
            s.i["alive"][active[gone]] = 0
            active = active[~gone]
        x, y = s.f["x"][active], s.f["y"][active]
        inside = (
            (np.abs(x) < pl.half_x[j])
            & (np.abs(y) < pl.half_y[j])
            & (x * x + y * y >= pl.hole_r[j] ** 2)
        )
        here = active[inside]
        kind = pl.kind[j]
        if kind in (PIXEL, STRIP, MUON):
            seen = here[rng.random(len(here)) < pl.efficiency[j]]
            _record_hits(rng, geo, j, s=s, seen=seen, cols=hit_cols, n_events=n_events)
        if kind == RICH:
            s.i["rich_inside"][here] = 1
            s.f["p_rich"][here] = _momentum(s, here)
        if kind == ECAL:
            _ecal(rng, geo, j, s=s, here=here, cols=dep_cols)
            continue
        if len(here):
            _material(rng, geo, j, s, here)
    _photons(rng, chunk, geo, event_of_row, dep_cols)
    n = s.n
    particles: dict[str, npt.NDArray[Any]] = {
        "event": s.i["event"][:n],
        "gen_index": s.i["gen_index"][:n],
        "pid": s.i["pid"][:n],
        "charge": s.f["charge"][:n],
        "parent": s.i["parent"][:n],
        "process": s.i["process"][:n],
        "fate": s.i["fate"][:n],
        "z_end": s.f["z"][:n],
        "path": s.f["path"][:n],
        "ox": s.origin[:n, 0],
        "oy": s.origin[:n, 1],
        "oz": s.origin[:n, 2],
        "px": s.p0[:n, 0],
        "py": s.p0[:n, 1],
        "pz": s.p0[:n, 2],
        "mass": s.f["mass"][:n],
        "rich_inside": s.i["rich_inside"][:n],
        "p_rich": s.f["p_rich"][:n],
    }
    hits = {k: np.concatenate(v) if v else np.zeros(0) for k, v in hit_cols.items()}
    for k in ("event", "plane", "particle"):
        hits[k] = hits[k].astype(np.int64)
    deposits = {k: np.concatenate(v) if v else np.zeros(0) for k, v in dep_cols.items()}
    for k in ("event", "particle"):
        deposits[k] = deposits[k].astype(np.int64)
    return TransportResult(particles, hits, deposits, n_events, chunk.event_ids)


def _photons(
    rng: np.random.Generator,
    chunk: EventChunk,
    geo: Geometry,
    event_of_row: IntArray,
    dep_cols: dict[str, list[npt.NDArray[Any]]],
) -> None:
    """Photons fly straight to the calorimeter and deposit their energy (conversions in the
    tracker material are not simulated)."""
    pl = geo.planes
    ecal = geo.config.ecal
    pid = chunk["pid"]
    px, py, pz = chunk["px"], chunk["py"], chunk["pz"]
    j_ecal = int(np.flatnonzero(pl.kind == ECAL)[0])
    photons = np.flatnonzero(
        (chunk["status"] == 1) & (pid == 22) & (pz > 0) & (chunk["vz"] < pl.z[j_ecal])
    )
    if len(photons):
        dz = pl.z[j_ecal] - chunk["vz"][photons]
        gx = chunk["vx"][photons] + px[photons] / pz[photons] * dz
        gy = chunk["vy"][photons] + py[photons] / pz[photons] * dz
        ok = (
            (np.abs(gx) < pl.half_x[j_ecal])
            & (np.abs(gy) < pl.half_y[j_ecal])
            & (gx**2 + gy**2 >= pl.hole_r[j_ecal] ** 2)
        )
        e = chunk["e"][photons][ok]
        _deposit(
            rng,
            ecal,
            dep_cols,
            event=event_of_row[photons][ok],
            x=gx[ok],
            y=gy[ok],
            e=e,
            particle=-2 - photons[ok],
        )


def _move(field_map: FieldMap, s: _Store, idx: IntArray, z_to: Array) -> None:
    if len(idx) == 0:
        return
    z_from = s.f["z"][idx]
    state = np.stack([s.f[k][idx] for k in ("x", "y", "tx", "ty", "qop")], axis=1)
    before = np.sqrt(1 + state[:, 2] ** 2 + state[:, 3] ** 2)
    out = propagate(field_map, state, z_from, z_to)
    after = np.sqrt(1 + out[:, 2] ** 2 + out[:, 3] ** 2)
    s.f["path"][idx] += np.abs(z_to - z_from) * 0.5 * (before + after)
    for k, name in enumerate(("x", "y", "tx", "ty", "qop")):
        s.f[name][idx] = out[:, k]
    s.f["z"][idx] = z_to


def _record_hits(
    rng: np.random.Generator,
    geo: Geometry,
    j: int,
    *,
    s: _Store,
    seen: IntArray,
    cols: dict[str, list[npt.NDArray[Any]]],
    n_events: int,
) -> None:
    pl = geo.planes
    sigma = pl.resolution[j]
    x, y = s.f["x"][seen], s.f["y"][seen]
    noise_n = rng.poisson(pl.noise_hits[j], n_events)
    n_noise = int(noise_n.sum())
    # noise uniform over the active area (outside the beam hole)
    nx = rng.uniform(-pl.half_x[j], pl.half_x[j], n_noise)
    ny = rng.uniform(-pl.half_y[j], pl.half_y[j], n_noise)
    keep = nx**2 + ny**2 > pl.hole_r[j] ** 2
    nx, ny = nx[keep], ny[keep]
    noise_event = np.repeat(np.arange(n_events), noise_n)[keep]
    all_x, all_y = np.concatenate([x, nx]), np.concatenate([y, ny])
    smear_noise = np.concatenate([np.ones(len(x)), np.zeros(len(nx))])
    if pl.kind[j] == STRIP:
        u = all_x * pl.cos[j] + all_y * pl.sin[j] + rng.normal(0, sigma, len(all_x)) * smear_noise
        v = np.full(len(u), np.nan)
    else:
        u = all_x + rng.normal(0, sigma, len(all_x)) * smear_noise
        v = all_y + rng.normal(0, sigma, len(all_x)) * smear_noise
    cols["event"].append(np.concatenate([s.i["event"][seen], noise_event]))
    cols["plane"].append(np.full(len(u), j))
    cols["u"].append(u)
    cols["v"].append(v)
    cols["particle"].append(np.concatenate([seen, np.full(len(nx), -1)]))


def _deposit(
    rng: np.random.Generator,
    ecal: Ecal,
    cols: dict[str, list[npt.NDArray[Any]]],
    *,
    event: IntArray,
    x: Array,
    y: Array,
    e: Array,
    particle: IntArray,
) -> None:
    sigma = e * np.sqrt(ecal.stochastic**2 / np.maximum(e, 1e-6) + ecal.constant**2)
    cols["event"].append(event)
    cols["x"].append(x + rng.normal(0, ecal.position_resolution, len(x)))
    cols["y"].append(y + rng.normal(0, ecal.position_resolution, len(y)))
    cols["e"].append(np.maximum(e + rng.normal(0, 1, len(e)) * sigma, 0.0))
    cols["particle"].append(particle)


def _ecal(
    rng: np.random.Generator,
    geo: Geometry,
    j: int,
    *,
    s: _Store,
    here: IntArray,
    cols: dict[str, list[npt.NDArray[Any]]],
) -> None:
    """Electrons shower fully; hadrons interact with probability 1 - exp(-1.1) and leave a
    fraction of their energy; muons (and non-interacting hadrons) leave their ionisation loss."""
    if len(here) == 0:
        return
    ecal = geo.config.ecal
    pl = geo.planes
    p = _momentum(s, here)
    mass = s.f["mass"][here]
    energy = np.sqrt(p**2 + mass**2)
    apid = np.abs(s.i["pid"][here])
    norm = np.sqrt(1 + s.f["tx"][here] ** 2 + s.f["ty"][here] ** 2)
    electron = apid == 11
    hadron = np.isin(apid, (211, 321, 2212))
    factor = np.array([SPECIES[int(a)][2] for a in apid])
    interacts = hadron & (
        rng.random(len(here)) < absorption_probability(pl.lambda_frac[j] * norm, factor)
    )
    lo, hi = ecal.hadron_fraction
    dep = _expected_loss(geo, j, p, mass=mass, charge=s.f["charge"][here], norm=norm)
    dep = np.where(electron, energy, dep)
    dep = np.where(interacts, energy * rng.uniform(lo, hi, len(here)), dep)
    _deposit(
        rng,
        ecal,
        cols,
        event=s.i["event"][here],
        x=s.f["x"][here],
        y=s.f["y"][here],
        e=dep,
        particle=here,
    )
    stop = electron | interacts
    s.i["alive"][here[stop]] = 0
    s.i["fate"][here[stop]] = np.where(electron[stop], STOPPED_CALO, ABSORBED)
    go = here[~stop]
    if len(go):
        # the rest crosses the lead like any material (scattering, ionisation; no absorption
        # here since it was just decided above)
        saved = s.i["alive"][go].copy()
        _material(rng, geo, j, s, go)
        revived = (s.i["fate"][go] == ABSORBED) & (saved == 1)
        s.i["alive"][go[revived]] = 1
        s.i["fate"][go[revived]] = LEFT
