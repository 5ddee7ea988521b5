"""Preprocessing saved with each model (pure numpy: inference needs neither torch nor scipy).

* :class:`Standardizer` for the inputs: ``(x - mean) / std``. At export it is folded into the
  first dense layer (``W' = W / std``, ``b' = b - (mean / std) W``), so it costs nothing at
  inference.
* :class:`TargetMap` for the generated outputs, FlashSim style:

  - integer columns (hit counts, photon counts) are **dequantised** with uniform noise in
    [0, 1) before fitting and floored back after sampling (so no "bridging" between integers);
  - values carrying a large point mass (a DLL of exactly 0 outside the RICH, no calorimeter
    energy) are **spikes**: spread by a tiny uniform noise for training and snapped back to
    the spike value after sampling;
  - then a **quantile transform** to a standard normal per column (256 knots, linear
    interpolation, sample min and max at -+5 sigma), which makes every marginal easy for a flow or
    an MLP generator; its inverse is a single ``np.interp`` per column.
"""

from __future__ import annotations

__all__ = ["SAMPLE_CLIP", "Standardizer", "TargetMap"]

from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
_N_QUANTILES = 256
_CLIP = 5.0
_SPIKE_MASS = 0.01  # a value holding >= 1% of a continuous column is treated as a spike
#: generated normal-space draws are clamped at this many sigma (see TargetMap.inverse)
SAMPLE_CLIP = 4.0


@dataclass
class Standardizer:
    mean: F32
    std: F32

    @classmethod
    def fit(cls, x: F32) -> Standardizer:
        mean = x.mean(axis=0).astype(np.float32)
        std = x.std(axis=0).astype(np.float32)
        return cls(mean, np.where(std > 1e-6, std, 1.0).astype(np.float32))

    def __call__(self, x: F32) -> F32:
        out: F32 = ((x - self.mean) / self.std).astype(np.float32)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Standardizer:
        return cls(np.asarray(data["mean"], np.float32), np.asarray(data["std"], np.float32))


def _normal_grid() -> Array:
    """Knots uniform in normal space between -4 and 4 sigma (so the tails get knots down to
    probabilities of 3e-5), plus the sample's min and max at -+5 sigma: nothing in the training
    range is clamped, and a lone outlier (a chi2/ndof of 1e9) only widens the outermost bin."""
    grid: Array = np.r_[-_CLIP, np.linspace(-4.0, 4.0, _N_QUANTILES - 2), _CLIP]
    return grid


def _grid_probabilities(grid: Array) -> Array:
    dist = NormalDist()
    probs: Array = np.array([dist.cdf(float(z)) for z in grid])
    probs[0], probs[-1] = 0.0, 1.0
    return probs


@dataclass
class TargetMap:
    """Per-column dequantisation, spikes and quantile transform of generated outputs."""

    names: list[str]
    integer: list[bool]
    #: per column: the spike values and the half-width of their training noise
    spikes: list[list[float]]
    widths: list[float]
    #: (n_quantiles, n_columns) data quantiles, strictly increasing per column
    quantiles: Array
    grid: Array = field(default_factory=_normal_grid)

    @classmethod
    def fit(
        cls,
        y: Array,
        names: list[str],
        integer: list[bool],
        rng: np.random.Generator,
    ) -> TargetMap:
        spikes: list[list[float]] = []
        widths: list[float] = []
        for j, is_int in enumerate(integer):
            col = y[:, j]
            if is_int:
                spikes.append([])
                widths.append(0.0)
                continue
            values, counts = np.unique(col, return_counts=True)
            heavy = values[counts >= _SPIKE_MASS * len(col)]
            iqr = float(np.subtract(*np.percentile(col, [75, 25]))) or float(np.std(col)) or 1.0
            spikes.append([float(v) for v in heavy])
            widths.append(1e-3 * iqr if len(heavy) else 0.0)
        empty = cls(names, integer, spikes, widths, np.zeros((_N_QUANTILES, len(names))))
        spread = empty.dequantise(y, rng)
        probs = _grid_probabilities(empty.grid)
        q = np.quantile(spread, probs, axis=0).reshape(_N_QUANTILES, len(names))
        # strictly increasing knots so that the inverse interpolation is a function; the step
        # is relative to the central spread, not the full range (a chi2/ndof of a failed fit
        # reaches 1e9 and would otherwise shift every knot)
        iqr = np.maximum(q[3 * _N_QUANTILES // 4] - q[_N_QUANTILES // 4], 1e-12)
        q = q + np.arange(_N_QUANTILES)[:, None] * (1e-9 * iqr)[None, :]
        empty.quantiles = np.maximum.accumulate(q, axis=0)
        return empty

    def dequantise(self, y: Array, rng: np.random.Generator) -> Array:
        out = np.array(y, dtype=np.float64, copy=True)
        for j, is_int in enumerate(self.integer):
            if is_int:
                out[:, j] += rng.random(len(out))
            elif self.spikes[j]:
                on = np.isin(out[:, j], self.spikes[j])
                out[on, j] += rng.uniform(-self.widths[j], self.widths[j], int(on.sum()))
        return out

    def forward(self, y: Array) -> F32:
        """Dequantised targets -> standard-normal space."""
        out = np.empty(y.shape, np.float32)
        for j in range(len(self.names)):
            out[:, j] = np.interp(y[:, j], self.quantiles[:, j], self.grid)
        return out

    def inverse(self, z: F32, clip: float | None = SAMPLE_CLIP) -> Array:
        """Normal space -> targets, integers floored and spikes snapped back.

        Generated values beyond ``clip`` sigma (6e-5 of a normal sample at 4) are clamped
        there: the outermost bin reaches the training sample's extreme, and a rare draw in it
        would land anywhere up to, e.g., the chi2/ndof of 1e9 of a failed fit (a flow sample
        of 3000 tracks showed a W1 of 132 reference widths from one such draw)."""
        if clip is not None:
            z = np.clip(z, -clip, clip)
        out = np.empty(z.shape, np.float64)
        for j in range(len(self.names)):
            col = np.interp(z[:, j], self.grid, self.quantiles[:, j])
            if self.integer[j]:
                col = np.floor(col)
            for spike in self.spikes[j]:
                col[np.abs(col - spike) <= self.widths[j]] = spike
            out[:, j] = col
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": self.names,
            "integer": self.integer,
            "spikes": self.spikes,
            "widths": self.widths,
            "quantiles": self.quantiles.tolist(),
            "grid": self.grid.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TargetMap:
        return cls(
            list(data["names"]),
            [bool(v) for v in data["integer"]],
            [[float(s) for s in row] for row in data["spikes"]],
            [float(w) for w in data["widths"]],
            np.asarray(data["quantiles"], np.float64),
            np.asarray(data["grid"], np.float64),
        )
