"""Primary-vertex finding and fitting from VELO tracks.

Seeds are clusters of the tracks' z of closest approach to the beam line (gaps > 3 mm split
clusters, >= 4 tracks make a seed). Each seed is fitted by weighted least squares of the
transverse distances of the straight VELO tracks to the vertex, which is linear in the vertex
position, with Tukey bisquare re-weighting (c = 3 sigma) to down-weight tracks from b and c
decays (an adaptive fit in the spirit of LHCb's PVFinder, Kucharczyk et al., LHCb-PUB-2014-044).
"""

from __future__ import annotations

__all__ = ["fit_primary_vertices"]

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

#: transverse position uncertainty of a VELO track at the vertex: hit resolution and multiple
#: scattering of a typical 2-3 GeV track over the ~30 mm to its first hit (mm)
_TRACK_SIGMA = 0.03


def _fit(lines: Array, iterations: int = 6) -> tuple[Array, Array, float, int]:
    """Vertex (x, y, z), its covariance, chi2 and the number of tracks with weight > 0.5."""
    x0, y0, tx, ty = lines.T
    w = np.ones(len(lines))
    vertex: Array = np.zeros(3)
    cov: Array = np.eye(3)
    for _ in range(iterations):
        a = np.zeros((3, 3))
        b = np.zeros(3)
        for rows, rhs in (
            (np.stack([np.ones_like(tx), np.zeros_like(tx), -tx], 1), x0),
            (np.stack([np.zeros_like(ty), np.ones_like(ty), -ty], 1), y0),
        ):
            wr = w / _TRACK_SIGMA**2
            a += (rows * wr[:, None]).T @ rows
            b += (rows * wr[:, None]).T @ rhs
        try:
            cov = np.asarray(np.linalg.inv(a), dtype=np.float64)
        except np.linalg.LinAlgError:
            break
        vertex = cov @ b
        dx = x0 + tx * vertex[2] - vertex[0]
        dy = y0 + ty * vertex[2] - vertex[1]
        r = np.sqrt(dx**2 + dy**2) / _TRACK_SIGMA
        w = np.where(r < 3.0, (1 - (r / 3.0) ** 2) ** 2, 0.0)
        if w.sum() < 2:
            break
    dx = x0 + tx * vertex[2] - vertex[0]
    dy = y0 + ty * vertex[2] - vertex[1]
    chi2 = float(np.sum(w * (dx**2 + dy**2)) / _TRACK_SIGMA**2)
    return vertex, cov, chi2, int((w > 0.5).sum())


def fit_primary_vertices(
    lines: Array, min_tracks: int = 4
) -> list[tuple[Array, Array, float, int]]:
    """Primary vertices from straight tracks ``lines`` (n, 4) = (x0, y0, tx, ty) at z = 0."""
    if len(lines) < min_tracks:
        return []
    x0, y0, tx, ty = lines.T
    t2 = np.maximum(tx**2 + ty**2, 1e-12)
    z_pca = -(x0 * tx + y0 * ty) / t2
    order = np.argsort(z_pca)
    zs = z_pca[order]
    splits = np.flatnonzero(np.diff(zs) > 3.0) + 1
    out = []
    for group in np.split(order, splits):
        if len(group) < min_tracks:
            continue
        vertex, cov, chi2, n = _fit(lines[group])
        if n >= min_tracks:
            out.append((vertex, cov, chi2, n))
    return out
