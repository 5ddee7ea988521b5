"""The dipole field map and 4th-order Runge-Kutta track propagation through it.

The field is tabulated on a regular (x, y, z) grid from the parametrisation in
``geometry.toml`` ([magnet]) and interpolated trilinearly, as a measured field map would be.
Tracks are stepped in z with the state (x, y, tx, ty, q/p) and the equations of motion of a
charged particle in a static field (e.g. LHCb's TrackRungeKuttaExtrapolator):

    dtx/dz = kappa q/p N (tx ty Bx - (1 + tx^2) By + ty Bz)
    dty/dz = kappa q/p N ((1 + ty^2) Bx - tx ty By - tx Bz),   N = sqrt(1 + tx^2 + ty^2)

with kappa = 0.299792458e-3 GeV/(T mm). Every function works on arrays of tracks at once.
"""

from __future__ import annotations

__all__ = ["KAPPA", "MAX_SLOPE", "FieldMap", "jacobian", "propagate"]

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from flashlink.sim.detector.geometry import Magnet

KAPPA = 0.299792458e-3
#: slopes beyond this (76 degrees) mean a track has curled out of the forward detector
MAX_SLOPE = 4.0
Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FieldMap:
    """Field components on a grid; ``lookup`` interpolates (zero outside the grid in z)."""

    x0: float
    y0: float
    z0: float
    step: tuple[float, float, float]
    b: Array  # shape (nx, ny, nz, 3)
    z_min: float
    z_max: float
    rk_step: float

    @classmethod
    def from_magnet(cls, magnet: Magnet) -> FieldMap:
        gx, gy, gz = magnet.grid_step
        xs = np.arange(-magnet.half_x, magnet.half_x + gx / 2, gx)
        ys = np.arange(-magnet.half_y, magnet.half_y + gy / 2, gy)
        zs = np.arange(magnet.z_min, magnet.z_max + gz / 2, gz)
        x, y, z = np.meshgrid(xs, ys, zs, indexing="ij")
        w = magnet.width
        shape = 0.5 * (np.tanh((z - magnet.z_in) / w) - np.tanh((z - magnet.z_out) / w))
        dshape = (
            0.5 / w * (np.cosh((z - magnet.z_in) / w) ** -2 - np.cosh((z - magnet.z_out) / w) ** -2)
        )
        radial = 1.0 - magnet.curvature * (x**2 + y**2) / 1e6
        b = np.zeros((*x.shape, 3))
        b[..., 1] = magnet.b0 * shape * radial
        b[..., 2] = magnet.b0 * y * dshape * radial  # dBz/dy = dBy/dz (curl-free, first order)
        return cls(
            float(xs[0]),
            float(ys[0]),
            float(zs[0]),
            (gx, gy, gz),
            b,
            magnet.z_min,
            magnet.z_max,
            magnet.rk_step,
        )

    def lookup(self, x: Array, y: Array, z: Array) -> Array:
        """Field (n, 3) at the points, trilinear interpolation; zero outside [z_min, z_max]."""
        nx, ny, nz, _ = self.b.shape
        fx = np.minimum(np.maximum((x - self.x0) / self.step[0], 0.0), nx - 1.000001)
        fy = np.minimum(np.maximum((y - self.y0) / self.step[1], 0.0), ny - 1.000001)
        fz = (z - self.z0) / self.step[2]
        inside = (fz >= 0) & (fz <= nz - 1)
        fz = np.minimum(np.maximum(fz, 0.0), nz - 1.000001)
        ix, iy, iz = fx.astype(np.int64), fy.astype(np.int64), fz.astype(np.int64)
        ux, uy, uz = (fx - ix)[:, None], (fy - iy)[:, None], (fz - iz)[:, None]
        flat = self.b.reshape(-1, 3)
        base = (ix * ny + iy) * nz + iz
        sx, sy = ny * nz, nz

        def at(offset: int) -> Array:
            out: Array = flat[base + offset]
            return out

        c00 = at(0) * (1 - ux) + at(sx) * ux
        c10 = at(sy) * (1 - ux) + at(sx + sy) * ux
        c01 = at(1) * (1 - ux) + at(sx + 1) * ux
        c11 = at(sy + 1) * (1 - ux) + at(sx + sy + 1) * ux
        out: Array = (c00 * (1 - uy) + c10 * uy) * (1 - uz) + (c01 * (1 - uy) + c11 * uy) * uz
        out[~inside] = 0.0
        return out

    def integral(self, z_from: float, z_to: float, x: float = 0.0, y: float = 0.0) -> float:
        """Integral of By dz (T mm) along a line of constant x, y."""
        zs = np.linspace(z_from, z_to, 2001)
        by = self.lookup(np.full_like(zs, x), np.full_like(zs, y), zs)[:, 1]
        return float(np.sum(0.5 * (by[1:] + by[:-1]) * np.diff(zs)))


def _derivative(field: FieldMap, z: Array, s: Array) -> Array:
    tx, ty, qop = s[:, 2], s[:, 3], s[:, 4]
    b = field.lookup(s[:, 0], s[:, 1], z)
    norm = np.sqrt(1.0 + tx * tx + ty * ty)
    k = KAPPA * qop * norm
    d = np.zeros_like(s)
    d[:, 0] = tx
    d[:, 1] = ty
    d[:, 2] = k * (tx * ty * b[:, 0] - (1.0 + tx * tx) * b[:, 1] + ty * b[:, 2])
    d[:, 3] = k * ((1.0 + ty * ty) * b[:, 0] - tx * ty * b[:, 1] - tx * b[:, 2])
    return d


def _in_field(field: FieldMap, z_from: Array, z_to: Array) -> npt.NDArray[np.bool_]:
    lo, hi = np.minimum(z_from, z_to), np.maximum(z_from, z_to)
    return (hi > field.z_min) & (lo < field.z_max)


def propagate(field: FieldMap, state: Array, z_from: Array, z_to: Array) -> Array:
    """Propagate states (n, 5) from ``z_from`` to ``z_to`` (arrays): RK4 in the field region,
    straight lines elsewhere. Steps are at most ``rk_step`` long."""
    out = state.copy()
    dz = z_to - z_from
    straight = ~_in_field(field, z_from, z_to)
    out[straight, 0] += out[straight, 2] * dz[straight]
    out[straight, 1] += out[straight, 3] * dz[straight]
    curved = np.flatnonzero(~straight & (dz != 0))
    if len(curved) == 0:
        return out
    s = out[curved]
    z = z_from[curved].astype(np.float64).copy()
    n_steps = max(1, int(np.ceil(np.abs(dz[curved]).max() / field.rk_step)))
    h = dz[curved] / n_steps
    for _ in range(n_steps):
        k1 = _derivative(field, z, s)
        k2 = _derivative(field, z + h / 2, s + k1 * (h / 2)[:, None])
        k3 = _derivative(field, z + h / 2, s + k2 * (h / 2)[:, None])
        k4 = _derivative(field, z + h, s + k3 * h[:, None])
        stepped = s + (k1 + 2 * k2 + 2 * k3 + k4) * (h / 6)[:, None]
        # a track turning sideways (|slope| > MAX_SLOPE) is frozen where it is: it has curled
        # out of the forward acceptance and the caller drops it
        sane = (np.abs(stepped[:, 2]) < MAX_SLOPE) & (np.abs(stepped[:, 3]) < MAX_SLOPE)
        s = np.where(sane[:, None], stepped, s)
        h = np.where(sane, h, 0.0)
        if not sane.all():
            s[~sane, 2] = np.sign(s[~sane, 2]) * MAX_SLOPE
        z = z + h
    out[curved] = s
    return out


#: finite-difference steps of (x, y, tx, ty, q/p) for the transport Jacobian
_EPS = np.array([1e-3, 1e-3, 1e-6, 1e-6, 1e-6])


def jacobian(field: FieldMap, state: Array, z_from: Array, z_to: Array) -> tuple[Array, Array]:
    """Propagated states and the transport Jacobians d(state_to)/d(state_from), shape (n, 5, 5).

    Straight-line tracks get the analytic Jacobian; tracks crossing the field get a
    forward-difference one from five extra RK4 propagations (vectorised over all tracks).
    """
    n = len(state)
    out = propagate(field, state, z_from, z_to)
    jac = np.tile(np.eye(5), (n, 1, 1))
    dz = z_to - z_from
    jac[:, 0, 2] = dz
    jac[:, 1, 3] = dz
    curved = np.flatnonzero(_in_field(field, z_from, z_to) & (dz != 0))
    if len(curved):
        base = state[curved]
        shifted = np.repeat(base[None], 5, axis=0)  # (5, m, 5)
        for i in range(5):
            shifted[i, :, i] += _EPS[i]
        moved = propagate(
            field, shifted.reshape(-1, 5), np.tile(z_from[curved], 5), np.tile(z_to[curved], 5)
        ).reshape(5, len(curved), 5)
        jac[curved] = np.transpose((moved - out[curved][None]) / _EPS[:, None, None], (1, 2, 0))
    return out, jac
