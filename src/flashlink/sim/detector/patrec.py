"""Pattern recognition: which hits belong together, from the hits alone (no truth).

Per event, in the order LHCb's reconstruction uses:

1. **VELO tracking**: every pair of hits on neighbouring pixel planes whose line passes within
   2 mm of the beam line is a seed; all seeds are extended plane by plane in both directions
   (nearest hit inside a 0.25 mm window, the line re-defined by the last two hits, stop after
   three missed planes), then clones are removed greedily, longest candidates first.
2. **T seeding**: pairs of hits on the first and last x-layers of the T stations, x-hits of the
   middle layers within a window around the line (the residual field makes tracks slightly
   parabolic), then stereo hits: each gives y = (u - x cos a) / sin a, and the densest cluster
   in y/z (straight in y, pointing roughly to the origin) is taken.
3. **Matching** VELO tracks to T seeds at the magnet's bending plane (x) and downstream (y),
   best pairs first; the kick between the slopes gives q/p = -d(tx) / (kappa * int(B dz)).
4. **UT hits**: for long tracks, predicted with the matched momentum; for unmatched VELO tracks
   (upstream tracks), each UT hit implies a q/p from the small fringe-field bending and the
   largest compatible cluster over the four layers wins (>= 3 layers).
5. **Downstream tracks**: unmatched T seeds extrapolated to the bending plane and joined to UT
   hits whose implied upstream slope agrees over >= 3 layers.

Busy events make wrong combinations (ghosts), as in a real detector. Every step is vectorised
over candidates with numpy; the loop over events and the greedy clone removal are Python.
"""

from __future__ import annotations

__all__ = ["EventHits", "TrackCandidate", "find_tracks"]

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from flashlink.sim.detector.field import KAPPA, FieldMap, propagate
from flashlink.sim.detector.geometry import Geometry

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

LONG, UPSTREAM, DOWNSTREAM = 1, 2, 3
_VELO_WINDOW = 0.25  # mm; MS of a 0.3 GeV pion over 50 mm of VELO is ~0.15 mm
_SEED_DOCA = 2.0  # mm from the beam line: b-hadron daughters have impact parameters << 1 mm
_T_X_WINDOW = 4.0  # mm around the T1-T3 line: sagitta of a 1 GeV track in the residual field
_T_TY_WINDOW = 0.002
_MIN_P = 1.0  # GeV, below this nothing reaches the T stations in this field


def _polyfit(x: Array, y: Array, degree: int) -> Array:
    """Least-squares polynomial (highest power first, like numpy.polyfit) from the normal
    equations: ~20x faster than numpy.polyfit's SVD for the few points of a track."""
    powers = np.vander(x, degree + 1)
    coef: Array = np.asarray(np.linalg.solve(powers.T @ powers, powers.T @ y), dtype=np.float64)
    return coef


def _polyval(coef: Array, x: Array | float) -> Array:
    out = np.zeros_like(np.asarray(x, dtype=np.float64))
    for c in coef:
        out = out * x + c
    return out


@dataclass
class EventHits:
    """The hits of one event, split by sub-detector (indices into the chunk's hit table)."""

    ids: IntArray
    plane: IntArray
    u: Array
    v: Array


@dataclass
class TrackCandidate:
    kind: int
    hits: list[int]
    seed: Array  # (5,) x, y, tx, ty, qop at z_seed
    z_seed: float
    velo: list[int] = field(default_factory=list)


def _velo_tracks(geo: Geometry, ev: EventHits) -> list[tuple[list[int], Array]]:  # noqa: PLR0915 - one algorithm, its steps share state
    """Straight-line VELO tracks: (hit ids, (x0, y0, tx, ty) at z=0)."""
    pl = geo.planes
    velo = pl.of("velo")
    sel = np.isin(ev.plane, velo)
    ids, plane, x, y = ev.ids[sel], ev.plane[sel], ev.u[sel], ev.v[sel]
    order = np.searchsorted(velo, plane)
    by_plane = [np.flatnonzero(order == k) for k in range(len(velo))]
    z = pl.z[velo]
    seeds_a, seeds_b = [], []
    for k in range(len(velo) - 1):
        a, b = by_plane[k], by_plane[k + 1]
        if len(a) == 0 or len(b) == 0:
            continue
        dz = z[k + 1] - z[k]
        tx = (x[b][None, :] - x[a][:, None]) / dz
        ty = (y[b][None, :] - y[a][:, None]) / dz
        t2 = np.maximum(tx**2 + ty**2, 1e-12)
        doca = np.abs(x[a][:, None] * ty - y[a][:, None] * tx) / np.sqrt(t2)
        good = (np.abs(tx) < 0.4) & (np.abs(ty) < 0.4) & (doca < _SEED_DOCA) & (t2 > 1e-6)
        ia, ib = np.nonzero(good)
        seeds_a.append(np.stack([np.full(len(ia), k), a[ia]], axis=1))
        seeds_b.append(np.stack([np.full(len(ib), k + 1), b[ib]], axis=1))
    if not seeds_a:
        return []
    sa, sb = np.concatenate(seeds_a), np.concatenate(seeds_b)
    n_cand = len(sa)
    chosen = np.full((n_cand, len(velo)), -1, np.int64)
    chosen[np.arange(n_cand), sa[:, 0]] = sa[:, 1]
    chosen[np.arange(n_cand), sb[:, 0]] = sb[:, 1]
    for direction in (1, -1):
        # the line through the last two hits, in the direction of the extension
        last = (sb if direction == 1 else sa).copy()
        prev = (sa if direction == 1 else sb).copy()
        misses = np.zeros(n_cand, np.int64)
        k_range = range(2, len(velo)) if direction == 1 else range(len(velo) - 3, -1, -1)
        for k in k_range:
            live = (misses < 3) & ((last[:, 0] < k) if direction == 1 else (last[:, 0] > k))
            hits_k = by_plane[k]
            rows = np.flatnonzero(live)
            if len(rows) == 0:
                continue
            if len(hits_k) == 0:
                misses[rows] += 1
                continue
            z1, z2 = z[prev[rows, 0]], z[last[rows, 0]]
            h1, h2 = prev[rows, 1], last[rows, 1]
            f = (z[k] - z2) / (z2 - z1)
            px = x[h2] + (x[h2] - x[h1]) * f
            py = y[h2] + (y[h2] - y[h1]) * f
            d2 = (px[:, None] - x[hits_k][None, :]) ** 2 + (py[:, None] - y[hits_k][None, :]) ** 2
            best = np.argmin(d2, axis=1)
            ok = d2[np.arange(len(rows)), best] < _VELO_WINDOW**2
            found = rows[ok]
            chosen[found, k] = hits_k[best[ok]]
            prev[found] = last[found]
            last[found, 0] = k
            last[found, 1] = hits_k[best[ok]]
            misses[rows[~ok]] += 1
            misses[found] = 0
    n_hits = (chosen >= 0).sum(axis=1)
    order_c = np.argsort(-n_hits, kind="stable")
    used = np.zeros(len(ids), bool)
    tracks: list[tuple[list[int], Array]] = []
    for c in order_c:
        if n_hits[c] < 3:
            break
        hs = chosen[c][chosen[c] >= 0]
        if used[hs].any():
            continue
        used[hs] = True
        zs = z[np.searchsorted(velo, plane[hs])]
        ax = _polyfit(zs, x[hs], 1)
        ay = _polyfit(zs, y[hs], 1)
        tracks.append(([int(i) for i in ids[hs]], np.array([ax[1], ay[1], ax[0], ay[0]])))
    return tracks


def _t_seeds(  # noqa: PLR0912, PLR0915 - one algorithm, its steps share state
    geo: Geometry, ev: EventHits
) -> list[tuple[list[int], Array]]:
    """T-station seeds: (hit ids, (x, tx, curvature, y0, ty) of x = x + tx dz + c dz^2 about
    z_ref, y = y0 + ty z)."""
    pl = geo.planes
    tpl = pl.of("t")
    x_layers = tpl[pl.sin[tpl] == 0]
    uv_layers = tpl[pl.sin[tpl] != 0]
    z_ref = float(pl.z[tpl].mean())
    sel = np.isin(ev.plane, tpl)
    ids, plane, u = ev.ids[sel], ev.plane[sel], ev.u[sel]
    hits_of = {int(j): np.flatnonzero(plane == j) for j in tpl}
    pairs = [(x_layers[0], x_layers[-1]), (x_layers[1], x_layers[-2])]
    cand_hits: list[IntArray] = []
    for ja, jb in pairs:
        a, b = hits_of[int(ja)], hits_of[int(jb)]
        if len(a) == 0 or len(b) == 0:
            continue
        tx = (u[b][None, :] - u[a][:, None]) / (pl.z[jb] - pl.z[ja])
        ia, ib = np.nonzero(np.abs(tx) < 0.8)
        if len(ia) == 0:
            continue
        txs = tx[ia, ib]
        n = len(ia)
        found = np.full((n, len(x_layers)), -1, np.int64)
        for k, j in enumerate(x_layers):
            hk = hits_of[int(j)]
            if j == ja:
                found[:, k] = a[ia]
                continue
            if j == jb:
                found[:, k] = b[ib]
                continue
            if len(hk) == 0:
                continue
            pred = u[a[ia]] + txs * (pl.z[j] - pl.z[ja])
            d = np.abs(pred[:, None] - u[hk][None, :])
            best = np.argmin(d, axis=1)
            ok = d[np.arange(n), best] < _T_X_WINDOW
            found[ok, k] = hk[best[ok]]
        good = (found >= 0).sum(axis=1) >= 5
        cand_hits.extend(found[good])
    seeds: list[tuple[int, list[int], Array]] = []
    z_x = pl.z[x_layers]
    for found in cand_hits:
        hs = found[found >= 0]
        dz = pl.z[plane[hs]] - z_ref
        coef = _polyfit(dz, u[hs], 2)
        if np.abs(_polyval(coef, dz) - u[hs]).max() > 1.0:
            continue
        # stereo hits: y from each u given x(z); keep the densest cluster in y/z
        ty_all, which = [], []
        for j in uv_layers:
            hk = hits_of[int(j)]
            if len(hk) == 0:
                continue
            xz = _polyval(coef, pl.z[j] - z_ref)
            y = (u[hk] - xz * pl.cos[j]) / pl.sin[j]
            keep = np.abs(y) < pl.half_y[j]
            ty_all.append(y[keep] / pl.z[j])
            which.append(hk[keep])
        if not ty_all:
            continue
        tys, hk_all = np.concatenate(ty_all), np.concatenate(which)
        if len(tys) < 4:
            continue
        order = np.argsort(tys)
        tys, hk_all = tys[order], hk_all[order]
        ends = np.searchsorted(tys, tys + _T_TY_WINDOW)
        counts = ends - np.arange(len(tys))
        start = int(np.argmax(counts))
        window = hk_all[start : ends[start]]
        if len(np.unique(plane[window])) < 4:
            continue
        # one hit per stereo plane: the closest to the window's median
        med = np.median(tys[start : ends[start]])
        chosen: dict[int, int] = {}
        for h, t in zip(window, tys[start : ends[start]], strict=True):
            j = int(plane[h])
            if j not in chosen or abs(t - med) < abs(
                (u[chosen[j]] - _polyval(coef, pl.z[j] - z_ref) * pl.cos[j]) / pl.sin[j] / pl.z[j]
                - med
            ):
                chosen[j] = int(h)
        stereo = np.array(list(chosen.values()))
        ys = u[stereo] - _polyval(coef, pl.z[plane[stereo]] - z_ref) * pl.cos[plane[stereo]]
        ys /= pl.sin[plane[stereo]]
        ay = _polyfit(pl.z[plane[stereo]], ys, 1)
        all_hits = np.concatenate([hs, stereo])
        params = np.array([coef[2], coef[1], coef[0], ay[1], ay[0]])
        seeds.append((len(all_hits), [int(i) for i in all_hits], params))
    del z_x
    seeds.sort(key=lambda s: -s[0])
    used: set[int] = set()
    out: list[tuple[list[int], Array]] = []
    for _n, hs_list, params in seeds:
        if used.intersection(hs_list):
            continue
        used.update(hs_list)
        out.append(([int(ids[h]) for h in hs_list], params))
    return out


@dataclass(frozen=True)
class _Magnet:
    z_kick: float
    integral: float  # T mm
    z_ref: float


def _magnet(geo: Geometry, field_map: FieldMap) -> _Magnet:
    m = geo.config.magnet
    tpl = geo.planes.of("t")
    return _Magnet(
        0.5 * (m.z_in + m.z_out),
        field_map.integral(m.z_min, m.z_max),
        float(geo.planes.z[tpl].mean()),
    )


def _match(
    velo: list[tuple[list[int], Array]], seeds: list[tuple[list[int], Array]], mag: _Magnet
) -> list[tuple[int, int, float]]:
    """Best-first VELO-T pairs: (velo index, seed index, q/p estimate)."""
    if not velo or not seeds:
        return []
    v = np.array([p for _, p in velo])  # x0, y0, tx, ty at z=0
    s = np.array([p for _, p in seeds])  # x, tx, c about z_ref; y0, ty
    zk, zr = mag.z_kick, mag.z_ref
    xv = v[:, 0][:, None] + v[:, 2][:, None] * zk
    xt = s[:, 0][None, :] + s[:, 1][None, :] * (zk - zr) + s[:, 2][None, :] * (zk - zr) ** 2
    yv = v[:, 1][:, None] + v[:, 3][:, None] * zr
    yt = s[:, 3][None, :] + s[:, 4][None, :] * zr
    tx_t = s[:, 1][None, :]
    dtx = tx_t / np.sqrt(1 + tx_t**2) - v[:, 2][:, None] / np.sqrt(1 + v[:, 2][:, None] ** 2)
    qop = -dtx / (KAPPA * mag.integral)
    p = 1 / np.maximum(np.abs(qop), 1e-4)
    sx = 5.0 + 60.0 / p
    sy = 5.0 + 40.0 / p
    score = (
        ((xv - xt) / sx) ** 2 + ((yv - yt) / sy) ** 2 + ((v[:, 3][:, None] - s[:, 4]) / 0.004) ** 2
    )
    score = np.where(p > _MIN_P, score, np.inf)
    pairs: list[tuple[int, int, float]] = []
    taken_v, taken_s = set(), set()
    flat = np.argsort(score, axis=None)
    for f in flat:
        i, j = divmod(int(f), len(seeds))
        if score[i, j] > 9.0:
            break
        if i in taken_v or j in taken_s:
            continue
        taken_v.add(i)
        taken_s.add(j)
        pairs.append((i, j, float(qop[i, j])))
    return pairs


def _ut_predictions(
    geo: Geometry, field_map: FieldMap, states: Array, z0: float
) -> tuple[Array, Array]:
    """Predicted u (n, 4) on the UT planes for the states at z0, and du/d(q/p) (n, 4)."""
    pl = geo.planes
    ut = pl.of("ut")
    n = len(states)
    both = np.concatenate([states, states])
    both[n:, 4] += 1e-3
    z = np.full(2 * n, z0)
    u0 = np.zeros((n, len(ut)))
    slope = np.zeros((n, len(ut)))
    for k, j in enumerate(ut):
        z_to = np.full(2 * n, pl.z[j])
        both = propagate(field_map, both, z, z_to)
        z = z_to
        u = both[:, 0] * pl.cos[j] + both[:, 1] * pl.sin[j]
        u0[:, k] = u[:n]
        slope[:, k] = (u[n:] - u[:n]) / 1e-3
    return u0, slope


def _ut_hits(
    geo: Geometry, ev: EventHits, u0: Array, slope: Array, *, qop: float | None
) -> tuple[list[int], float] | None:
    """UT hits for one VELO track from its predictions (``_ut_predictions``). With ``qop``
    known, the nearest hit per layer within a window; otherwise every hit implies a q/p and the
    value most layers agree on wins."""
    pl = geo.planes
    per_plane = []
    for k, j in enumerate(pl.of("ut")):
        hk = np.flatnonzero(ev.plane == j)
        if len(hk) == 0:
            continue
        if qop is not None:
            d = np.abs(ev.u[hk] - (u0[k] + slope[k] * qop))
            ok = d < 3.0
            per_plane.append((d[ok], hk[ok]))
        elif slope[k] != 0:
            implied = (ev.u[hk] - u0[k]) / slope[k]
            ok = np.abs(implied) < 1.0 / _MIN_P
            per_plane.append((implied[ok], hk[ok]))
    if qop is not None:
        hits = [int(ev.ids[h[np.argmin(d)]]) for d, h in per_plane if len(d)]
        return (hits, qop) if len(hits) >= 3 else None
    values = np.concatenate([v for v, _ in per_plane]) if per_plane else np.zeros(0)
    if len(values) < 3:
        return None
    tol = 0.02  # in q/p (1/GeV): the UT alone measures q/p to ~15-20% at a few GeV
    best_hits: list[int] = []
    best_q = 0.0
    for q in values:
        hits = []
        for v, h in per_plane:
            if len(v) == 0:
                continue
            d = np.abs(v - q)
            i = int(np.argmin(d))
            if d[i] < tol:
                hits.append(int(h[i]))
        if len(hits) > len(best_hits):
            best_hits, best_q = hits, float(q)
    if len(best_hits) < 3:
        return None
    return [int(ev.ids[h]) for h in best_hits], best_q


def find_tracks(
    geo: Geometry, field_map: FieldMap, events: list[EventHits]
) -> list[tuple[list[TrackCandidate], list[tuple[list[int], Array]]]]:
    """Per event: its long, upstream and downstream track candidates, and its VELO tracks (for
    the primary-vertex fit). The Runge-Kutta predictions into the UT are made for all VELO
    tracks of all events at once (one vectorised call instead of one per track)."""
    pl = geo.planes
    mag = _magnet(geo, field_map)
    velos = [_velo_tracks(geo, ev) for ev in events]
    seeds_all = [_t_seeds(geo, ev) for ev in events]
    pairs_all = [_match(v, s_, mag) for v, s_ in zip(velos, seeds_all, strict=True)]
    z0 = float(pl.z[pl.of("velo")][-1])
    rows = []
    for velo, pairs in zip(velos, pairs_all, strict=True):
        qop_of = {i: q for i, _, q in pairs}
        for i, (_, pv) in enumerate(velo):
            rows.append([pv[0] + pv[2] * z0, pv[1] + pv[3] * z0, pv[2], pv[3], qop_of.get(i, 0.0)])
    states = np.array(rows, dtype=np.float64).reshape(-1, 5)
    u0_all, slope_all = _ut_predictions(geo, field_map, states, z0)
    out = []
    start = 0
    for ev, velo, seeds, pairs in zip(events, velos, seeds_all, pairs_all, strict=True):
        u0, slope = u0_all[start : start + len(velo)], slope_all[start : start + len(velo)]
        start += len(velo)
        out.append(
            (
                _assemble(
                    geo, ev, velo=velo, seeds=seeds, pairs=pairs, u0=u0, slope=slope, mag=mag
                ),
                velo,
            )
        )
    return out


def _assemble(
    geo: Geometry,
    ev: EventHits,
    *,
    velo: list[tuple[list[int], Array]],
    seeds: list[tuple[list[int], Array]],
    pairs: list[tuple[int, int, float]],
    u0: Array,
    slope: Array,
    mag: _Magnet,
) -> list[TrackCandidate]:
    pl = geo.planes
    cands: list[TrackCandidate] = []
    matched_v = {i for i, _, _ in pairs}
    matched_s = {j for _, j, _ in pairs}
    used_ut: set[int] = set()
    for i, j, qop in pairs:
        hits_v, pv = velo[i]
        # the predictions were made at this q/p, so the correction term is zero
        ut = _ut_hits(geo, ev, u0[i], slope[i], qop=0.0)
        ut_hits = [h for h in ut[0] if h not in used_ut] if ut else []
        used_ut.update(ut_hits)
        cands.append(_candidate(LONG, hits_v + ut_hits + seeds[j][0], pv, qop, velo=hits_v))
    for i, (hits_v, pv) in enumerate(velo):
        if i in matched_v:
            continue
        ut = _ut_hits(geo, ev, u0[i], slope[i], qop=None)
        if ut is None or used_ut.intersection(ut[0]):
            continue
        used_ut.update(ut[0])
        cands.append(_candidate(UPSTREAM, hits_v + ut[0], pv, ut[1], velo=hits_v))
    for j, (hits_t, ps) in enumerate(seeds):
        if j in matched_s:
            continue
        down = _downstream(geo, ev, ps, mag, used_ut)
        if down is None:
            continue
        ut_hits, seed = down
        used_ut.update(ut_hits)
        z_ut = float(pl.z[pl.of("ut")[0]])
        cands.append(TrackCandidate(DOWNSTREAM, ut_hits + hits_t, seed, z_ut))
    return cands


def _candidate(
    kind: int, hits: list[int], pv: Array, qop: float, *, velo: list[int]
) -> TrackCandidate:
    # seed at z = 0 (the fit starts at the first hit plane and propagates the seed there)
    return TrackCandidate(kind, hits, np.array([pv[0], pv[1], pv[2], pv[3], qop]), 0.0, velo)


def _downstream(
    geo: Geometry, ev: EventHits, ps: Array, mag: _Magnet, used_ut: set[int]
) -> tuple[list[int], Array] | None:
    """Join a T seed to UT hits whose implied slope before the magnet agrees (>= 3 layers)."""
    pl = geo.planes
    zk, zr = mag.z_kick, mag.z_ref
    xk = ps[0] + ps[1] * (zk - zr) + ps[2] * (zk - zr) ** 2
    per_plane = []
    for j in pl.of("ut"):
        hk = np.flatnonzero(ev.plane == j)
        hk = np.array([h for h in hk if int(ev.ids[h]) not in used_ut], dtype=np.int64)
        if len(hk) == 0:
            continue
        y = ps[3] + ps[4] * pl.z[j]
        x = (ev.u[hk] - y * pl.sin[j]) / pl.cos[j]
        slope = (xk - x) / (zk - pl.z[j])
        per_plane.append((slope, hk))
    if len(per_plane) < 3:
        return None
    best: list[int] = []
    best_s = 0.0
    for s in np.concatenate([v for v, _ in per_plane]):
        hits = []
        for v, h in per_plane:
            d = np.abs(v - s)
            k = int(np.argmin(d))
            if d[k] < 0.003:
                hits.append(int(h[k]))
        if len(hits) > len(best):
            best, best_s = hits, float(s)
    if len(best) < 3:
        return None
    tx_t = ps[1] + 2 * ps[2] * (zk - zr)
    dtx = tx_t / np.sqrt(1 + tx_t**2) - best_s / np.sqrt(1 + best_s**2)
    qop = -dtx / (KAPPA * mag.integral)
    if abs(qop) > 1 / _MIN_P:
        return None
    z_ut = float(pl.z[pl.of("ut")[0]])
    seed = np.array([xk + best_s * (z_ut - zk), ps[3] + ps[4] * z_ut, best_s, ps[4], qop])
    return [int(ev.ids[h]) for h in best], seed
