"""Compiled inference kernels (numba) of the ``numba`` backend: spline-flow inverse and
quantile maps.

The ``numba`` backend of :mod:`~flashlink.sim.flash.runtime` keeps the dense layers in BLAS
(single-thread sgemm reached 19 GMAC/s here, a per-row compiled loop 5-6) and compiles what
numpy did badly: the flows' rational-quadratic spline inverse, which numpy evaluated as ~30
element-wise operations over (rows, features, bins) temporaries (~85% of the chain's time in
the first session's profile). What made it fast, measured on this machine:

* **feature-major layout**: the conditioners run as ``W^T @ input^T``, so a spline
  parameter or a feature is one contiguous row and the batch rows are the innermost loop;
  every step (squash, exp, knot sums, the bin search as a running selection over the K
  bins, the quadratic) is then a branch-free loop that LLVM vectorises;
* **a vectorisable exp**: ``(p(x / 16))^16`` with a degree-7 Taylor polynomial ``p`` in
  float32 (0.4 ns per value against 8.8 ns for glibc's scalar ``exp``, which LLVM cannot
  vectorise without SVML); only the two derivatives at the bin's knots are exponentiated;
* ``error_model="numpy"``: without it every float division carries a ZeroDivisionError
  branch and no loop containing one is vectorised;
* **pruned conditioners** (:func:`prune`): zuko's coupling conditioners are masked MLPs;
  the network of a first pass reaches its outputs through 32 of its 64 hidden units.

The spline inverse is Durkan et al., "Neural Spline Flows", arXiv:1906.04032, eq. 6-8, as
zuko's ``MonotonicRQSTransform._inverse`` (identity outside [-bound, bound]); the equality
with zuko's sampling is tested (2e-4), as for the other backends.

The runtime imports this module only for the ``numba`` backend: without numba the ``onnx``
and ``numpy`` backends work as before.
"""

from __future__ import annotations

__all__ = ["prune", "quantile_inverse", "spline_inverse", "squash_factors"]

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numba
import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Fn = TypeVar("Fn", bound=Callable[..., Any])


def _jit(fn: Fn) -> Fn:
    """``numba.njit`` with an on-disk cache next to the module, or without one where that
    directory is read-only and no user cache directory exists (e.g. inside a container
    image): the first call then compiles, ~2-4 s for all kernels here."""
    # error_model="numpy": no ZeroDivisionError check on float division, whose branch kept
    # LLVM from vectorising any loop with a division (1.7 -> 0.2 ns per division, measured)
    try:
        return numba.njit(  # type: ignore[no-any-return]
            fn, cache=True, fastmath=True, nogil=True, error_model="numpy"
        )
    except RuntimeError:
        return numba.njit(  # type: ignore[no-any-return]
            fn, cache=False, fastmath=True, nogil=True, error_model="numpy"
        )


def prune(layers: Sequence[tuple[F32, F32]]) -> list[tuple[F32, F32]]:
    """The same network without the hidden units that reach no output (a first coupling
    pass uses 32 of its conditioner's 64 units per layer: zuko's masks)."""
    ws = [np.asarray(w, np.float32) for w, _ in layers]
    bs = [np.asarray(b, np.float32) for _, b in layers]
    keep_out = np.arange(ws[-1].shape[1])
    for k in range(len(ws) - 1, -1, -1):
        ws[k] = ws[k][:, keep_out]
        bs[k] = bs[k][keep_out]
        if k > 0:
            # unit i of layer k-1 matters iff some kept output of layer k has a weight from it
            keep_out = np.flatnonzero(np.any(ws[k] != 0.0, axis=1))
            if len(keep_out) == 0:  # a degenerate (all-zero) layer: keep one unit, harmless
                keep_out = np.zeros(1, np.int64)
            ws[k] = ws[k][keep_out]
    return [(np.ascontiguousarray(w), np.ascontiguousarray(b)) for w, b in zip(ws, bs, strict=True)]


# Taylor coefficients of exp as float32 constants: with Python float literals numba computes
# the polynomial in float64, half the vector width plus conversions (measured 2x slower)
_E2, _E3, _E4 = np.float32(1 / 2), np.float32(1 / 6), np.float32(1 / 24)
_E5, _E6, _E7 = np.float32(1 / 120), np.float32(1 / 720), np.float32(1 / 5040)
_ONE, _SIXTEENTH = np.float32(1.0), np.float32(1 / 16)


@_jit
def _exp(v: np.float32) -> np.float32:
    """exp(v) for |v| <~ 8 as (Taylor_7(v / 16))^16: vectorisable (glibc's exp is not,
    without SVML), relative error < 1e-6 in float32 on the squashed spline parameters."""
    u = v * _SIXTEENTH
    p = _ONE + u * (_ONE + u * (_E2 + u * (_E3 + u * (_E4 + u * (_E5 + u * (_E6 + u * _E7))))))
    p = p * p
    p = p * p
    p = p * p
    return p * p


def squash_factors(n_features: int, bins: int, slope: float) -> F32:
    """The per-parameter factor of :func:`_squash_exp` for ``n_features`` splines."""
    inv = -1.0 / math.log(slope)
    one = np.r_[np.full(2 * bins, 2.0 * inv), np.full(bins - 1, inv)]
    return np.tile(one, n_features).astype(np.float32)


@_jit
def spline_inverse(  # noqa: PLR0912, PLR0915, PLR0917 - one compiled kernel, flat loops
    phi: F32, y: F32, cols: I64, dest: F32, fac: F32, bins: int, bound: float
) -> None:
    """``dest[cols[c], r] = RQS^-1(y[cols[c], r])`` with the parameters of feature c in
    ``phi[c * (3K - 1) : (c + 1) * (3K - 1), r]``: one coupling pass over a tile of rows, in
    feature-major layout (one contiguous row per parameter or feature, one column per row
    of the batch). ``phi`` is overwritten.

    The rows of the batch are the innermost loop everywhere, so that every step - squashing,
    exp, knot sums, the bin search as a running selection over the K bins, the quadratic -
    is a branch-free loop over contiguous floats that LLVM vectorises (one spline at a time,
    with a data-dependent bin walk, took 260 ns per value, measured). The derivatives are
    selected first and exponentiated after: 2 of the K - 1 per value."""
    m = phi.shape[1]
    per = 3 * bins - 1
    lo = np.float32(-bound)
    hi = np.float32(bound)
    two_b = np.float32(2.0 * bound)
    one = np.float32(1.0)
    zero = np.float32(0.0)
    sw = np.empty(m, np.float32)
    sh = np.empty(m, np.float32)
    cx = np.empty(m, np.float32)
    cy = np.empty(m, np.float32)
    x0 = np.empty(m, np.float32)
    y0 = np.empty(m, np.float32)
    wk = np.empty(m, np.float32)
    hk = np.empty(m, np.float32)
    d0 = np.empty(m, np.float32)
    d1 = np.empty(m, np.float32)
    kk = np.empty(m, np.float32)
    for c in range(cols.shape[0]):
        j = cols[c]
        o = c * per
        yy = y[j]
        for i in range(o, o + 2 * bins):
            f = fac[i]
            row = phi[i]
            for r in range(m):
                v = row[r]
                row[r] = v / (one + abs(f * v))
            for r in range(m):
                row[r] = _exp(row[r])
        for r in range(m):
            sw[r] = 0.0
            sh[r] = 0.0
        for k in range(bins):
            ew = phi[o + k]
            eh = phi[o + bins + k]
            for r in range(m):
                sw[r] += ew[r]
                sh[r] += eh[r]
        for r in range(m):
            sw[r] = two_b / sw[r]
            sh[r] = two_b / sh[r]
            cx[r] = lo
            cy[r] = lo
        # the bin of y: the last one whose lower knot is below y (bin 0 for y <= -B, where
        # the identity applies anyway), then its knots, size and raw end-point derivatives;
        # several loops over few arrays each: with all of them in one loop LLVM vectorised
        # nothing (too many possible aliases to check), 80 -> 25 ns per value (measured)
        for k in range(bins):
            eh = phi[o + bins + k]
            fk = np.float32(k)
            first = k == 0
            for r in range(m):
                h = eh[r] * sh[r]
                take = first or cy[r] < yy[r]
                kk[r] = fk if take else kk[r]
                y0[r] = cy[r] if take else y0[r]
                hk[r] = h if take else hk[r]
                cy[r] += h
        for k in range(bins):
            ew = phi[o + k]
            fk = np.float32(k)
            for r in range(m):
                w = ew[r] * sw[r]
                x0[r] = cx[r] if kk[r] == fk else x0[r]
                wk[r] = w if kk[r] == fk else wk[r]
                cx[r] += w
        for r in range(m):
            d0[r] = zero
            d1[r] = zero
        for k in range(bins):
            fk = np.float32(k)
            if k > 0:
                ed = phi[o + 2 * bins + k - 1]
                for r in range(m):
                    d0[r] = ed[r] if kk[r] == fk else d0[r]
            if k < bins - 1:
                ed = phi[o + 2 * bins + k]
                for r in range(m):
                    d1[r] = ed[r] if kk[r] == fk else d1[r]
        f = fac[o + 2 * bins]
        for r in range(m):  # exp(0) = 1 at the outer knots
            v = d0[r]
            d0[r] = v / (one + abs(f * v))
            v = d1[r]
            d1[r] = v / (one + abs(f * v))
        for r in range(m):
            d0[r] = _exp(d0[r])
            d1[r] = _exp(d1[r])
        out = dest[j]
        for r in range(m):
            # the quadratic in float64: its cancellations cost 4e-4 over three transforms in
            # float32, against the 2e-4 of the equality test with zuko
            v = np.float64(yy[r])
            w = np.float64(wk[r])
            h = np.float64(hk[r])
            e0 = np.float64(d0[r])
            s = h / w
            yr = v - np.float64(y0[r])
            curve = e0 + np.float64(d1[r]) - 2.0 * s
            a = h * (s - e0) + yr * curve
            b = h * e0 - yr * curve
            q = -s * yr
            disc = max(b * b - 4.0 * a * q, 0.0)
            denom = -b - math.sqrt(disc)
            z = 2.0 * q / denom if denom != 0.0 else 0.0
            inside = (v > lo) & (v <= hi)
            out[r] = np.float32(np.float64(x0[r]) + z * w) if inside else yy[r]


@_jit
def quantile_inverse(  # noqa: PLR0917 - a compiled kernel takes arrays, not objects
    z: F32,
    quantiles: F64,
    lo: float,
    step: float,
    clip: float,
    integer: npt.NDArray[np.bool_],
    spikes: F64,
    spike_ptr: I64,
    widths: F64,
) -> F64:
    """:meth:`TargetMap.inverse` for a grid whose knots 1..N-2 are uniform from ``lo`` with
    ``step`` and ``clip`` inside them: the bin is computed, not searched."""
    n, dim = z.shape
    out = np.empty((n, dim), np.float64)
    last = quantiles.shape[0] - 3  # the last uniform bin starts at knot N - 3 (1-based grid)
    for r in range(n):
        for j in range(dim):
            v = min(max(float(z[r, j]), -clip), clip)
            f = (v - lo) / step
            k = min(max(math.floor(f), 0), last - 1)
            frac = f - k
            q0 = quantiles[k + 1, j]
            val = q0 + frac * (quantiles[k + 2, j] - q0)
            if integer[j]:
                val = math.floor(val)
            for i in range(spike_ptr[j], spike_ptr[j + 1]):
                if abs(val - spikes[i]) <= widths[j]:
                    val = spikes[i]
            out[r, j] = val
    return out
