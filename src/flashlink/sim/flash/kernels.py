"""Compiled inference kernels (numba) of the ``numba`` backend: spline-flow inverse and
quantile maps.

The ``numba`` backend of :mod:`~flashlink.sim.flash.runtime` keeps the dense layers in BLAS
(single-thread sgemm reached 19 GMAC/s here, a per-row compiled loop 5-6) and compiles what
numpy did badly: the flows' rational-quadratic spline inverse, which numpy evaluated as ~30
element-wise operations over (rows, features, bins) temporaries (~85% of the chain's time in
the first session's profile). What made it fast, measured on this machine:

* **feature-major layout**: the conditioners run as ``W^T @ input^T``, so a spline
  parameter or a feature is one contiguous row and the batch rows are the innermost loop;
  every step (squash, exp, knot sums, the bin as a count of the knots below y, the
  quadratic) is then a branch-free loop that LLVM vectorises;
* **no select loops**: the bin's knots and derivatives are gathered by index after the
  bin is counted, not selected by a masked pass over all K bins (LLVM vectorised none of
  those: 94 -> 34 ns per value);
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

__all__ = ["prune", "quantile_inverse", "relu", "spline_inverse", "squash_factors"]

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


@_jit
def relu(x: F32) -> None:
    """``x = max(x, 0)`` in place on a C-contiguous array: 0.07 ns per value against 0.8 for
    ``np.maximum(x, 0, out=x)`` (numpy 2.4 here, 64 x 1,000 floats), a quarter of the
    conditioners' time before."""
    flat = x.reshape(-1)
    zero = np.float32(0.0)
    for i in range(flat.shape[0]):
        flat[i] = max(flat[i], zero)


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

    Every loop but one runs over the rows of the batch and touches few arrays, so that LLVM
    vectorises it: squash and exp of the widths and heights, their running sums *in place*
    (row k of the widths becomes the knot position k + 1), the bin as a count of the knots
    below y, then exp of the two derivatives at the bin's knots and the quadratic. The one
    scalar loop gathers, per row, the bin's knots and raw derivatives by index. Measured on
    8 features x 1,000 rows (8 bins): 34 ns per value, against 94 ns for selecting the bin's
    values with a masked pass over all K bins (the previous kernel: LLVM vectorised none of
    those select loops) and 260 ns for a per-row bin walk."""
    m = phi.shape[1]
    per = 3 * bins - 1
    lo = np.float32(-bound)
    hi = np.float32(bound)
    two_b = np.float32(2.0 * bound)
    one = np.float32(1.0)
    zero = np.float32(0.0)
    zero64 = np.float64(0.0)
    sw = np.empty(m, np.float32)
    sh = np.empty(m, np.float32)
    kk = np.empty(m, np.int64)
    x0 = np.empty(m, np.float32)
    y0 = np.empty(m, np.float32)
    wk = np.empty(m, np.float32)
    hk = np.empty(m, np.float32)
    d0 = np.empty(m, np.float32)
    d1 = np.empty(m, np.float32)
    for c in range(cols.shape[0]):
        yy = y[cols[c]]
        o = c * per
        od = o + 2 * bins
        for i in range(o, od):
            f = fac[i]
            row = phi[i]
            for r in range(m):
                v = row[r]
                row[r] = v / (one + abs(f * v))
            for r in range(m):
                row[r] = _exp(row[r])
        # running sums in place: phi[o + k] = widths 0..k, phi[o + K + k] = heights 0..k
        for k in range(1, bins):
            for base in (o, o + bins):
                cur = phi[base + k]
                prev = phi[base + k - 1]
                for r in range(m):
                    cur[r] += prev[r]
        tw = phi[o + bins - 1]
        th = phi[od - 1]
        for r in range(m):
            sw[r] = two_b / tw[r]
            sh[r] = two_b / th[r]
        # the bin of y: the number of inner knots below it (bin 0 for y <= -B, where the
        # identity applies anyway)
        for r in range(m):
            kk[r] = 0
        for k in range(bins - 1):
            ch = phi[o + bins + k]
            for r in range(m):
                kk[r] += np.int64(lo + ch[r] * sh[r] < yy[r])
        for r in range(m):  # the gather, by index: scalar
            k = kk[r]
            km = max(k - 1, 0)
            cw0 = phi[o + km, r] if k > 0 else zero
            ch0 = phi[o + bins + km, r] if k > 0 else zero
            x0[r] = cw0
            y0[r] = ch0
            wk[r] = phi[o + k, r] - cw0
            hk[r] = phi[o + bins + k, r] - ch0
            g0 = phi[od + km, r]
            g1 = phi[od + min(k, bins - 2), r]
            d0[r] = g0 if k > 0 else zero  # exp(0) = 1 at the outer knots
            d1[r] = g1 if k < bins - 1 else zero
        f = fac[od]
        for r in range(m):
            v = d0[r]
            d0[r] = _exp(v / (one + abs(f * v)))
        for r in range(m):
            v = d1[r]
            d1[r] = _exp(v / (one + abs(f * v)))
        for r in range(m):
            x0[r] = lo + x0[r] * sw[r]
            wk[r] *= sw[r]
        for r in range(m):
            y0[r] = lo + y0[r] * sh[r]
            hk[r] *= sh[r]
        out = dest[cols[c]]
        for r in range(m):
            # the quadratic in float64: its cancellations cost 4e-4 over three transforms in
            # float32, against the 2e-4 of the equality test with zuko
            yv = yy[r]
            v64 = np.float64(yv)
            w = np.float64(wk[r])
            h = np.float64(hk[r])
            e0 = np.float64(d0[r])
            s = h / w
            yr = v64 - np.float64(y0[r])
            curve = e0 + np.float64(d1[r]) - 2.0 * s
            a = h * (s - e0) + yr * curve
            b = h * e0 - yr * curve
            q = -s * yr
            disc = b * b - 4.0 * a * q
            disc = disc if disc > 0.0 else zero64
            denom = -b - np.sqrt(disc)
            z = 2.0 * q / denom
            z = z if denom != 0.0 else zero64
            inside = (yv > lo) & (yv <= hi)
            res = np.float32(np.float64(x0[r]) + z * w)
            out[r] = res if inside else yv


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
