"""Primary-vertex smearing: a parametric model fitted to the reference vertices.

As Lamarr's ``PVReconstruction`` (a smearing table per data-taking condition), but with the
resolution depending on the number of tracks that make the vertex:
``sigma_k(n)^2 = a_k^2 / n + b_k^2`` for k in x, y, z, fitted by weighted least squares to the
residual variances of fitted reference vertices in bins of n. Events with fewer tracks than
the reference needs to fit a vertex get the true vertex smeared by the reference's fallback
width (``source = 1``), exactly as the reference does.
"""

from __future__ import annotations

__all__ = ["fit_pv_smearing", "smear_pvs"]

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from flashlink.sim.flash.errors import TrainingError

Array = npt.NDArray[np.float64]
_AXES = ("x", "y", "z")


def fit_pv_smearing(pvs: Mapping[str, npt.NDArray[Any]]) -> dict[str, Any]:
    """Fit the parameters from a reference ``pvs`` table (columns of ``sim detailed``)."""
    fitted = pvs["source"] == 0
    fallback = [float(np.sqrt(np.median(pvs[f"cov_{a}{a}"][~fitted]))) for a in _AXES]
    if not np.any(~fitted):
        fallback = [0.010, 0.010, 0.060]
    params: dict[str, Any] = {"fallback_sigma": fallback, "min_tracks": 1 << 30, "a": [], "b": []}
    if fitted.sum() < 20:
        if not np.any(~fitted):
            raise TrainingError("the pvs table has no vertices to fit the PV smearing to")
        return params
    n = pvs["n_tracks"][fitted].astype(np.float64)
    params["min_tracks"] = int(n.min())
    edges = np.unique(np.quantile(n, np.linspace(0, 1, 11)))
    which = np.clip(np.searchsorted(edges, n, "right") - 1, 0, max(len(edges) - 2, 0))
    for axis in _AXES:
        r = (pvs[axis] - pvs[f"true_{axis}"])[fitted]
        inv_n, var, w = [], [], []
        for b in np.unique(which):
            sel = which == b
            if sel.sum() < 5:
                continue
            core = r[sel][np.abs(r[sel] - np.median(r[sel])) < 5 * np.std(r[sel]) + 1e-12]
            inv_n.append(np.mean(1.0 / n[sel]))
            var.append(np.var(core))
            w.append(sel.sum())
        design = np.stack([np.asarray(inv_n), np.ones(len(inv_n))], axis=1)
        sw = np.sqrt(np.asarray(w, dtype=np.float64))
        coef, *_ = np.linalg.lstsq(design * sw[:, None], np.asarray(var) * sw, rcond=None)
        coef = np.maximum(coef, 0.0)
        params["a"].append(float(np.sqrt(coef[0])))
        params["b"].append(float(np.sqrt(coef[1])))
    return params


def smear_pvs(
    params: Mapping[str, Any],
    event_id: npt.NDArray[np.int64],
    truth: Array,
    n_tracks: npt.NDArray[np.int64],
    rng: np.random.Generator,
) -> dict[str, npt.NDArray[Any]]:
    """One vertex per event: ``truth`` (n, 3) smeared with the n-dependent resolution."""
    n = np.asarray(n_tracks, dtype=np.int64)
    fit = (n >= params["min_tracks"]) & (len(params["a"]) == 3)
    sigma = np.tile(np.asarray(params["fallback_sigma"], np.float64), (len(n), 1))
    if np.any(fit):
        a = np.asarray(params["a"], np.float64)
        b = np.asarray(params["b"], np.float64)
        sigma[fit] = np.sqrt(a[None, :] ** 2 / n[fit, None] + b[None, :] ** 2)
    pos = truth + rng.standard_normal(truth.shape) * sigma
    dof = np.maximum(2 * n - 3, 1)
    return {
        "event_id": event_id,
        "x": pos[:, 0],
        "y": pos[:, 1],
        "z": pos[:, 2],
        "cov_xx": sigma[:, 0] ** 2,
        "cov_yy": sigma[:, 1] ** 2,
        "cov_zz": sigma[:, 2] ** 2,
        "n_tracks": np.where(fit, n, 0),
        "chi2": np.where(fit, rng.chisquare(dof), 0.0),
        "source": np.where(fit, 0, 1).astype(np.int64),
        "true_x": truth[:, 0],
        "true_y": truth[:, 1],
        "true_z": truth[:, 2],
    }
