"""How the statistical error of a selected yield scales with the oversampling factor k.

With oversampling (CMS FlashSim, arXiv:2402.13684) each generated event is flash-simulated k
times. The replicas of one event share its generator-level particles, so they are correlated:
the error of a yield estimated from N events and m replicas is

    sigma_m^2 = Var_e(mu_e) / N + E_e[Var(Y | e)] / (N m),

which falls like 1/sqrt(m) only while the detector term dominates and then levels off at the
generator term. :func:`oversampling_study` measures sigma_m for m = 1..k with a bootstrap over
*generated* events (each resampled event brings all its replicas, which is how an analysis
must treat them) and compares it with the naive 1/sqrt(N m) error that wrongly treats the
replicas as independent events.
"""

from __future__ import annotations

__all__ = ["oversampling_study"]

from typing import Any

import numpy as np
import numpy.typing as npt


def _selected(tracks: dict[str, npt.NDArray[Any]]) -> npt.NDArray[np.bool_]:
    """The selection: long tracks with p > 5 GeV and isMuon (a muon-trigger-like yield)."""
    out: npt.NDArray[np.bool_] = (
        (tracks["type"] == 1) & (tracks["p"] > 5.0) & (tracks["is_muon"] == 1)
    )
    return out


def oversampling_study(
    tracks: dict[str, npt.NDArray[Any]],
    *,
    events: npt.NDArray[np.int64] | None = None,
    bootstrap: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """``events``: every generated event number (events without a selected track count as
    zero yield; by default only the events seen in ``tracks``)."""
    k = int(tracks["replica"].max()) + 1
    if events is None:
        events = np.unique(tracks["gen_event_id"])
    events = np.unique(events)
    ev_index = np.searchsorted(events, tracks["gen_event_id"])
    counts = np.zeros((len(events), k))
    sel = _selected(tracks)
    np.add.at(counts, (ev_index[sel], tracks["replica"][sel]), 1.0)
    rng = np.random.default_rng(seed)
    n = len(events)
    picks = rng.integers(0, n, (bootstrap, n))
    out: dict[str, Any] = {"k": k, "events": n, "m": [], "yield": [], "error": [], "naive": []}
    for m in range(1, k + 1):
        per_event = counts[:, :m].mean(axis=1)
        boot = per_event[picks].mean(axis=1)
        out["m"].append(m)
        out["yield"].append(float(per_event.mean()))
        out["error"].append(float(boot.std()))
        out["naive"].append(float(counts[:, :m].std() / np.sqrt(n * m)))
    between = float(np.var(counts.mean(axis=1)))
    within = float(np.mean(np.var(counts, axis=1, ddof=1))) if k > 1 else 0.0
    out["generator_variance"] = between - within / k
    out["detector_variance"] = within
    return out
