"""Kalman-filter track fit, vectorised over all tracks of a chunk (Frühwirth, NIM A262 (1987)
444; the LHCb flavour: state (x, y, tx, ty, q/p) in z, noise from thin scatterers).

For every tracking plane in z order, all tracks whose hits span that plane are propagated
(Runge-Kutta with a finite-difference Jacobian in the field, straight lines outside), updated
with the plane's one or two 1-D measurements (a pixel gives x and y, a strip u = x cos a +
y sin a) and then given the plane's material: Highland multiple-scattering noise on the slopes
and the mean ionisation loss on q/p with its Landau (Moyal) variance, exactly the model the
transport samples from. A forward pass seeds a backward pass (started with a blown-up
covariance), whose state at the most upstream hit holds the information of every hit; it is
carried on through the planes crossed upstream of that hit to the point of closest approach
to the beam line (z axis), where the fit reports its state and 5x5 covariance. chi2 is the sum
of the backward pass's residual contributions, ndof = measurements - 5.
"""

from __future__ import annotations

__all__ = ["FitResult", "fit_tracks"]

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from flashlink.sim.detector.field import FieldMap, jacobian
from flashlink.sim.detector.geometry import PIXEL, RICH, STRIP, Geometry
from flashlink.sim.detector.materials import MOYAL_MEAN, MOYAL_VARIANCE, highland, landau_parameters

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class FitResult:
    state: Array  # (n, 5) at the point of closest approach to the beam line
    z: Array  # (n,) z of that point
    cov: Array  # (n, 5, 5)
    chi2: Array
    ndof: IntArray
    last_state: Array  # (n, 5) at the most downstream hit (for extrapolation to PID detectors)
    last_z: Array
    ok: npt.NDArray[np.bool_]


def tracking_planes(geo: Geometry) -> IntArray:
    """Planes the fit walks through: the trackers and the RICH radiator's material."""
    return np.flatnonzero(np.isin(geo.planes.kind, (PIXEL, STRIP, RICH)))


def _noise(
    geo: Geometry, j: int, state: Array, mass: Array, *, downstream: bool
) -> tuple[Array, Array, Array]:
    """Slope covariance terms, q/p variance and the q/p after the mean energy loss of plane j."""
    pl = geo.planes
    tx, ty, qop = state[:, 2], state[:, 3], state[:, 4]
    norm2 = 1 + tx**2 + ty**2
    norm = np.sqrt(norm2)
    p = 1.0 / np.maximum(np.abs(qop), 1e-6)
    charge = np.sign(qop)
    energy = np.sqrt(p**2 + mass**2)
    beta = p / energy
    theta2 = highland(p, beta, charge, pl.x0_frac[j] * norm) ** 2
    q = np.zeros((len(state), 5, 5))
    q[:, 2, 2] = theta2 * norm2 * (1 + tx**2)
    q[:, 3, 3] = theta2 * norm2 * (1 + ty**2)
    q[:, 2, 3] = q[:, 3, 2] = theta2 * norm2 * tx * ty
    mpv, xi = landau_parameters(
        p / mass,
        charge,
        z_over_a=pl.z_over_a[j],
        ion=pl.mean_excitation[j],
        grammage=pl.grammage[j] * norm,
        density=pl.density[j],
    )
    loss = mpv + MOYAL_MEAN * xi
    e_new = energy - loss if downstream else energy + loss
    p_new = np.sqrt(np.maximum(e_new**2 - mass**2, 1e-6))
    q[:, 4, 4] = MOYAL_VARIANCE * xi**2 * (energy / p) ** 2 / p**4
    return q, charge / p_new, np.zeros(0)


def _update(
    state: Array,
    cov: Array,
    chi2: Array,
    rows: IntArray,
    *,
    c: Array,
    s: Array,
    u: Array,
    sigma: float,
) -> None:
    """1-D measurement u = c x + s y with resolution sigma, for tracks ``rows`` (in place)."""
    if len(rows) == 0:
        return
    x, C = state[rows], cov[rows]
    h = np.zeros((len(rows), 5))
    h[:, 0], h[:, 1] = c, s
    ch = np.einsum("nij,nj->ni", C, h)
    r = u - (c * x[:, 0] + s * x[:, 1])
    var = (h * ch).sum(axis=1) + sigma**2
    gain = ch / var[:, None]
    state[rows] = x + gain * r[:, None]
    cov[rows] = C - gain[:, :, None] * ch[:, None, :]
    chi2[rows] += r * r / var


def _walk(
    geo: Geometry,
    field_map: FieldMap,
    planes: IntArray,
    *,
    state: Array,
    cov: Array,
    z: Array,
    active: npt.NDArray[np.bool_],
    u: Array,
    v: Array,
    mass: Array,
    downstream: bool,
    chi2: Array,
) -> None:
    """Propagate / update / add material for each plane in ``planes`` order (in place).

    ``active`` (n, len(planes)) says which tracks visit which plane."""
    pl = geo.planes
    for k, j in enumerate(planes):
        rows = np.flatnonzero(active[:, k])
        if len(rows) == 0:
            continue
        zj = np.full(len(rows), pl.z[j])
        new, jac = jacobian(field_map, state[rows], z[rows], zj)
        state[rows] = new
        cov[rows] = jac @ cov[rows] @ np.transpose(jac, (0, 2, 1))
        z[rows] = zj
        hu, hv = u[rows, k], v[rows, k]
        has_u = np.isfinite(hu)
        if pl.kind[j] == PIXEL:
            sel = rows[has_u]
            n = len(sel)
            _update(
                state,
                cov,
                chi2,
                sel,
                c=np.ones(n),
                s=np.zeros(n),
                u=hu[has_u],
                sigma=pl.resolution[j],
            )
            has_v = np.isfinite(hv)
            sel = rows[has_v]
            n = len(sel)
            _update(
                state,
                cov,
                chi2,
                sel,
                c=np.zeros(n),
                s=np.ones(n),
                u=hv[has_v],
                sigma=pl.resolution[j],
            )
        elif pl.kind[j] == STRIP:
            sel = rows[has_u]
            n = len(sel)
            _update(
                state,
                cov,
                chi2,
                sel,
                c=np.full(n, pl.cos[j]),
                s=np.full(n, pl.sin[j]),
                u=hu[has_u],
                sigma=pl.resolution[j],
            )
        x, y = state[rows, 0], state[rows, 1]
        inside = (
            (np.abs(x) < pl.half_x[j])
            & (np.abs(y) < pl.half_y[j])
            & (x * x + y * y >= pl.hole_r[j] ** 2)
        )
        mat = rows[inside]
        if len(mat) and pl.x0_frac[j] > 0:
            q, qop, _ = _noise(geo, int(j), state[mat], mass[mat], downstream=downstream)
            cov[mat] += q
            state[mat, 4] = qop


def fit_tracks(
    geo: Geometry,
    field_map: FieldMap,
    *,
    u: Array,
    v: Array,
    seed: Array,
    mass: Array,
) -> FitResult:
    """Fit tracks given their measurements per tracking plane.

    ``u``, ``v``: (n, len(tracking_planes)) measured coordinates, NaN where a track has no hit
    (``v`` only for pixel planes). ``seed``: (n, 5) approximate state at the first hit plane.
    ``mass``: the mass hypothesis for material effects (the pion mass, as LHCb does).
    """
    planes = tracking_planes(geo)
    n, m = u.shape
    has = np.isfinite(u) | np.isfinite(v)
    n_meas = np.isfinite(u).sum(axis=1) + np.isfinite(v).sum(axis=1)
    first = np.argmax(has, axis=1)
    last = m - 1 - np.argmax(has[:, ::-1], axis=1)
    idx = np.arange(m)[None, :]
    span = (idx >= first[:, None]) & (idx <= last[:, None])
    z_planes = geo.planes.z[planes]
    state = seed.astype(np.float64).copy()
    z = z_planes[first].astype(np.float64)
    big = np.diag([100.0, 100.0, 0.01, 0.01, 1.0])
    cov = np.tile(big, (n, 1, 1))
    cov[:, 4, 4] = (0.5 * np.abs(seed[:, 4]) + 0.05) ** 2
    chi2 = np.zeros(n)
    _walk(
        geo,
        field_map,
        planes,
        state=state,
        cov=cov,
        z=z,
        active=span,
        u=u,
        v=v,
        mass=mass,
        downstream=True,
        chi2=chi2,
    )
    last_state, last_z = state.copy(), z.copy()
    # backward pass from the forward result, with an uninformative covariance
    cov = np.tile(big, (n, 1, 1))
    cov[:, 4, 4] = (0.2 * np.abs(state[:, 4]) + 1e-3) ** 2
    chi2 = np.zeros(n)
    _walk(
        geo,
        field_map,
        planes[::-1],
        state=state,
        cov=cov,
        z=z,
        active=span[:, ::-1],
        u=u[:, ::-1],
        v=v[:, ::-1],
        mass=mass,
        downstream=False,
        chi2=chi2,
    )
    # planes upstream of the first hit that the track crossed on its way from the beam line
    pl = geo.planes
    empty = np.full((n, 1), np.nan)
    for k in range(m - 1, -1, -1):
        j = planes[k]
        tx, ty = state[:, 2], state[:, 3]
        z_pca = z - (state[:, 0] * tx + state[:, 1] * ty) / np.maximum(tx**2 + ty**2, 1e-12)
        visit = (k < first) & (pl.z[j] > z_pca) & (pl.kind[j] == PIXEL)
        if visit.any():
            _walk(
                geo,
                field_map,
                planes[k : k + 1],
                state=state,
                cov=cov,
                z=z,
                active=visit[:, None],
                u=empty,
                v=empty,
                mass=mass,
                downstream=False,
                chi2=chi2,
            )
    tx, ty = state[:, 2], state[:, 3]
    z_pca = z - (state[:, 0] * tx + state[:, 1] * ty) / np.maximum(tx**2 + ty**2, 1e-12)
    new, jac = jacobian(field_map, state, z, z_pca)
    cov = jac @ cov @ np.transpose(jac, (0, 2, 1))
    ok = np.isfinite(new).all(axis=1) & np.isfinite(cov).all(axis=(1, 2))
    return FitResult(new, z_pca, cov, chi2, (n_meas - 5).astype(np.int64), last_state, last_z, ok)
