"""Inference of exported flash models: numpy and onnxruntime, no torch, no training code.

An exported model is a directory ``<name>/`` with ``manifest.json`` (inputs, outputs,
preprocessing, flow layout, versions, training-set hash, validation metrics), ``weights.npz``
(dense layers, input standardisation already folded into the first layer) and one ONNX file
per network. Every network is a ReLU MLP, so the two backends are:

* ``onnx`` (default when onnxruntime is installed): fused Gemm+ReLU kernels; measured 2-4x
  faster than numpy on this machine for 32-64 wide layers at 1-8k rows per call
  (benchmarks/flash_chain.py);
* ``numpy``: a plain forward pass (``x @ W + b``, ``max(x, 0)``), the scikinC equivalent;
* ``numba`` (``flashlink[sim]`` installs numba): every network, the flows' spline inverse and
  the target maps compiled (:mod:`~flashlink.sim.flash.kernels`), row by row in cache-sized
  tiles, the fastest by far for flows (docs/flash.md has the measurements);
* ``auto``: ``numba`` when it is importable, else ``onnx``, else ``numpy``.

Generators sample in the normal space of their :class:`~flashlink.sim.flash.preprocessing.
TargetMap` and map back (integers floored, spikes snapped). Flows are sampled by inverting
zuko's coupling transforms in numpy: for each transform (last first) ``passes`` evaluations of
its masked conditioner followed by the rational-quadratic spline inverse
(Durkan et al. 2019, eq. 6-8, as zuko's ``MonotonicRQSTransform._inverse``).
"""

from __future__ import annotations

__all__ = ["BACKENDS", "FlashModel", "load_model", "resolve_backend"]

import importlib.util
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from flashlink.sim.flash.errors import ModelFormatError
from flashlink.sim.flash.preprocessing import SAMPLE_CLIP as _CLIP
from flashlink.sim.flash.preprocessing import TargetMap

F32 = npt.NDArray[np.float32]
Array = npt.NDArray[np.float64]
BACKENDS = ("auto", "numba", "onnx", "numpy")
FORMAT = "flashlink-flash-model/1"


class _NumpyNet:
    def __init__(self, layers: list[tuple[F32, F32]]) -> None:
        self.layers = layers

    def __call__(self, x: F32) -> F32:
        last = len(self.layers) - 1
        for k, (w, b) in enumerate(self.layers):
            x = x @ w
            x += b
            if k < last:
                np.maximum(x, 0.0, out=x)
        return x


class _OnnxNet:
    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort  # noqa: PLC0415 - optional backend

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def __call__(self, x: F32) -> F32:
        out: F32 = self._session.run(None, {self._input: np.ascontiguousarray(x)})[0]
        return out


def _knots(u: F32, bound: float) -> F32:
    """Softmax of the unconstrained widths or heights -> knot positions -B..B (n, D, K+1).

    The inputs are already squashed to |u| < -ln(slope) / 2 ~ 3.5, so the exponentials need
    no max-subtraction."""
    e = np.exp(u)
    out = np.empty((*u.shape[:-1], u.shape[-1] + 1), np.float32)
    out[..., 0] = 0.0
    np.cumsum(e, axis=-1, out=out[..., 1:])
    out *= (2.0 * bound) / out[..., -1:]
    out -= bound
    return out


def _rqs_inverse(phi: F32, y: F32, bins: int, bound: float, slope: float) -> F32:
    """Inverse of zuko's monotonic rational-quadratic spline, vectorised over (n, D)."""
    inv = np.float32(-1.0 / math.log(slope))
    w = phi[..., :bins]
    h = phi[..., bins : 2 * bins]
    d = phi[..., 2 * bins :]
    xs = _knots(w / (1 + np.abs(2 * inv * w)), bound)
    ys = _knots(h / (1 + np.abs(2 * inv * h)), bound)
    ds = np.ones((*d.shape[:-1], bins + 1), np.float32)
    ds[..., 1:-1] = np.exp(d / (1 + np.abs(inv * d)))
    k = (ys < y[..., None]).sum(axis=-1) - 1
    inside = (k >= 0) & (k < bins)
    k = np.clip(k, 0, bins - 1)[..., None]
    x0 = np.take_along_axis(xs, k, -1)[..., 0]
    x1 = np.take_along_axis(xs, k + 1, -1)[..., 0]
    y0 = np.take_along_axis(ys, k, -1)[..., 0]
    y1 = np.take_along_axis(ys, k + 1, -1)[..., 0]
    d0 = np.take_along_axis(ds, k, -1)[..., 0]
    d1 = np.take_along_axis(ds, k + 1, -1)[..., 0]
    dy = y1 - y0
    s = dy / (x1 - x0)
    yr = np.where(inside, y - y0, np.float32(0.0))
    curve = d0 + d1 - 2 * s
    a = dy * (s - d0) + yr * curve
    b = dy * d0 - yr * curve
    c = -s * yr
    z = 2 * c / (-b - np.sqrt(np.maximum(b * b - 4 * a * c, np.float32(0.0))))
    out: F32 = np.where(inside, x0 + z * (x1 - x0), y).astype(np.float32)
    return out


def _relu(x: F32) -> None:
    np.maximum(x, 0.0, out=x)


def resolve_backend(backend: str) -> str:
    """The concrete backend of ``backend`` (``auto``: numba, else onnx, else numpy)."""
    if backend not in BACKENDS:
        raise ModelFormatError(f"backend {backend!r} is unknown; valid: {list(BACKENDS)}")
    if backend != "auto":
        return backend
    for name, module in (("numba", "numba"), ("onnx", "onnxruntime")):
        if importlib.util.find_spec(module) is not None:
            return name
    return "numpy"


class _DenseNet:
    """A ReLU MLP evaluated with BLAS into preallocated buffers, in row tiles.

    Tiles of 1024 rows keep the activations in L2: single-thread sgemm here reached 19 GMAC/s
    on 512-row blocks against 8.5 GMAC/s on 8192 rows (64x64 layer, measured)."""

    TILE = 1024

    def __init__(
        self, layers: list[tuple[F32, F32]], relu: Callable[[F32], None] | None = None
    ) -> None:
        self.relu = relu if relu is not None else _relu
        self.layers = [
            (np.ascontiguousarray(w, np.float32), b.astype(np.float32)) for w, b in layers
        ]
        self.n_out = self.layers[-1][0].shape[1]
        self._bufs: list[F32] = [
            np.empty((self.TILE, w.shape[1]), np.float32) for w, _ in self.layers
        ]

    def into(self, x: F32, out: F32) -> None:
        """``out[:] = net(x)`` for at most TILE rows."""
        m = len(x)
        last = len(self.layers) - 1
        for k, (w, b) in enumerate(self.layers):
            dst = out if k == last else self._bufs[k][:m]
            np.matmul(x, w, out=dst)
            dst += b
            if k < last:
                self.relu(dst)
            x = dst

    def __call__(self, x: F32) -> F32:
        out = np.empty((len(x), self.n_out), np.float32)
        for s in range(0, len(x), self.TILE):
            self.into(x[s : s + self.TILE], out[s : s + self.TILE])
        return out


#: rows per flow tile: not a power of two, so that the feature-major rows of a tile are not
#: 4 kB apart (4k aliasing); activations of a tile (~1000 x 64 floats) stay in L2
_FLOW_TILE = 1000


class _DenseNetT:
    """A ReLU MLP on feature-major inputs: ``h^T = [W^T | b] [x^T; 1]`` by BLAS.

    The bias is a column of the weights and every input and hidden activation carries a row
    of ones, so that a layer is one GEMM into a preallocated buffer and one in-place ReLU:
    a separate ``h += b`` and a fresh output array per layer took 40 % of the time of the
    GEMMs, the folded bias 25 % less time overall (measured on the covariance flow's
    conditioners at 1,000 rows). ``skip`` drops the first ``skip`` input columns, for inputs
    known to be zero (the features of a flow's first coupling pass)."""

    def __init__(
        self,
        layers: list[tuple[F32, F32]],
        skip: int = 0,
        relu: Callable[[F32], None] | None = None,
    ) -> None:
        self.relu = relu if relu is not None else _relu
        self.weights = [
            np.ascontiguousarray(
                np.concatenate([w.T[:, skip if k == 0 else 0 :], b[:, None]], axis=1), np.float32
            )
            for k, (w, b) in enumerate(layers)
        ]
        self._bufs: dict[int, list[F32]] = {}

    def _buffers(self, m: int) -> list[F32]:
        bufs = self._bufs.get(m)
        if bufs is None:
            if len(self._bufs) >= 4:  # bounded: a chunk's last tile has any size
                del self._bufs[next(iter(self._bufs))]
            last = len(self.weights) - 1
            bufs = []
            for k, w in enumerate(self.weights):
                buf = np.empty((w.shape[0] + (k < last), m), np.float32)
                if k < last:
                    buf[-1] = 1.0
                bufs.append(buf)
            self._bufs[m] = bufs
        return bufs

    def __call__(self, x_t: F32) -> F32:
        """The output (n_out, m) for an input (n_in [- skip] + 1, m) whose last row is ones;
        the output buffer is reused by the next call with the same m."""
        last = len(self.weights) - 1
        for k, (w, buf) in enumerate(zip(self.weights, self._buffers(x_t.shape[1]), strict=True)):
            dst = buf[: w.shape[0]]
            np.matmul(w, x_t, out=dst)
            if k < last:
                self.relu(dst)
            x_t = buf
        return x_t


class _Compiled:
    """The ``numba`` backend of one model: pruned BLAS networks, compiled spline inverse and
    target map (:mod:`~flashlink.sim.flash.kernels`)."""

    def __init__(self, manifest: dict[str, Any], weights: Any, targets: TargetMap | None) -> None:
        try:
            from flashlink.sim.flash import kernels  # noqa: PLC0415 - optional backend
        except ImportError as exc:
            raise ModelFormatError(
                f"backend 'numba' needs numba ({exc}): pip install 'flashlink[sim]', or use "
                "--backend onnx or numpy"
            ) from exc
        self.kernels = kernels
        self.nets = {
            net: _DenseNet(
                kernels.prune(
                    [
                        (weights[f"{net}.{k}.W"].astype(np.float32), weights[f"{net}.{k}.b"])
                        for k in range(len(layout["layers"]))
                    ]
                ),
                relu=kernels.relu,
            )
            for net, layout in manifest["nets"].items()
        }
        self.flow_cfg = manifest.get("flow")
        self.nets_t: dict[str, _DenseNetT] = {}
        if self.flow_cfg is not None:
            cfg = self.flow_cfg
            dim = len(manifest["outputs"])
            # a first pass sees only the condition: its feature inputs are zero
            self.nets_t = {
                net: _DenseNetT(
                    layers.layers, skip=dim if net.endswith("p0") else 0, relu=kernels.relu
                )
                for net, layers in self.nets.items()
            }
            self.cols = {
                (t, p): np.flatnonzero(np.asarray(cfg["orders"][t]) == p).astype(np.int64)
                for t in range(cfg["transforms"])
                for p in range(cfg["passes"])
            }
            self.fac = {
                key: kernels.squash_factors(len(c), int(cfg["bins"]), float(cfg["slope"]))
                for key, c in self.cols.items()
            }
        self.quantile: tuple[Any, ...] | None = None
        if targets is not None:
            grid = targets.grid
            n = len(grid)
            inner = np.linspace(grid[1], grid[-2], n - 2)
            if n > 3 and np.allclose(grid[1:-1], inner, rtol=0, atol=1e-9) and grid[-2] >= _CLIP:
                spikes = [np.asarray(v, np.float64) for v in targets.spikes]
                self.quantile = (
                    np.ascontiguousarray(targets.quantiles, np.float64),
                    float(grid[1]),
                    float(grid[2] - grid[1]),
                    float(_CLIP),
                    np.asarray(targets.integer, np.bool_),
                    np.concatenate([np.zeros(0), *spikes]).astype(np.float64),
                    np.r_[0, np.cumsum([len(v) for v in spikes])].astype(np.int64),
                    np.asarray(targets.widths, np.float64),
                )

    def flow(self, x: F32, base: F32) -> F32:
        """Invert the coupling flow tile by tile in feature-major layout: per transform
        (last first) and pass, the pruned conditioner by BLAS (``W^T @ input^T``), then the
        compiled spline inverse writes the pass's features in place into the next
        conditioner input ``[features; condition]``."""
        cfg = self.flow_cfg
        assert cfg is not None
        n, dim = base.shape
        tile = _FLOW_TILE
        x_t = np.ascontiguousarray(x.T, np.float32)
        out_t = np.ascontiguousarray(base.T, np.float32)
        bins, bound = int(cfg["bins"]), float(cfg["bound"])
        for s in range(0, n, tile):
            m = min(tile, n - s)
            # the conditioner input [features; condition; 1] (the ones carry the biases)
            rows = np.empty((dim + x.shape[1] + 1, m), np.float32)
            rows[dim:-1] = x_t[:, s : s + m]
            rows[-1] = 1.0
            # contiguous: a column slice of out_t made numba compile the kernel for strided
            # rows ('A' layout), whose loops over y did not vectorise (62 -> 37 ns per value)
            y = np.ascontiguousarray(out_t[:, s : s + m])
            for t in reversed(range(cfg["transforms"])):
                rows[:dim] = 0.0
                for p in range(cfg["passes"]):
                    phi = self.nets_t[f"t{t}p{p}"](rows[dim:] if p == 0 else rows)
                    self.kernels.spline_inverse(
                        phi, y, self.cols[(t, p)], rows, self.fac[(t, p)], bins, bound
                    )
                y[:] = rows[:dim]
            out_t[:, s : s + m] = y
        return np.ascontiguousarray(out_t.T)

    def inverse(self, z: F32) -> Array | None:
        if self.quantile is None:
            return None
        out: Array = self.kernels.quantile_inverse(
            np.ascontiguousarray(z, np.float32), *self.quantile
        )
        return out


class FlashModel:
    """One exported model, ready to classify or sample."""

    def __init__(self, path: Path, backend: str = "auto", threads: int = 1) -> None:
        backend = resolve_backend(backend)
        self.backend = backend
        self.path = path
        try:
            self.manifest: dict[str, Any] = json.loads((path / "manifest.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelFormatError(f"cannot read the model manifest in {path}: {exc}") from exc
        if self.manifest.get("format") != FORMAT:
            raise ModelFormatError(
                f"{path}/manifest.json has format {self.manifest.get('format')!r}, "
                f"expected {FORMAT!r}: re-export the model with this flashlink version"
            )
        self.name: str = self.manifest["name"]
        self.kind: str = self.manifest["kind"]
        self.family: str = self.manifest["family"]
        self.inputs: list[str] = self.manifest["inputs"]
        self.outputs: list[str] = self.manifest["outputs"]
        self.noise: int = int(self.manifest.get("noise", 0))
        self.targets = (
            TargetMap.from_dict(self.manifest["preprocessing"]["targets"])
            if self.kind == "generator"
            else None
        )
        weights = np.load(path / "weights.npz")
        self.nets: dict[str, Any] = {}
        self._compiled = (
            _Compiled(self.manifest, weights, self.targets) if backend == "numba" else None
        )
        if self._compiled is not None:
            self.nets = dict(self._compiled.nets)
        for net, layout in self.manifest["nets"].items():
            if backend == "numba":
                continue
            if backend == "onnx":
                self.nets[net] = _OnnxNet(path / f"{net}.onnx", threads)
            else:
                n_layers = len(layout["layers"])
                self.nets[net] = _NumpyNet(
                    [
                        (weights[f"{net}.{k}.W"].astype(np.float32), weights[f"{net}.{k}.b"])
                        for k in range(n_layers)
                    ]
                )

    def probabilities(self, x: F32) -> F32:
        """Class probabilities (n, n_classes) of a classifier."""
        logits = self.nets["net"](x)
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        out: F32 = logits
        return out

    def sample_normal(self, x: F32, rng: np.random.Generator, base: F32 | None = None) -> F32:
        """One sample per row in the generator's normal (preprocessed) target space.

        ``base`` replaces the random draw (the MLP's noise or the flow's base sample), so that
        tests can compare with torch on the same noise."""
        n = len(x)
        if self.family == "mlp":
            noise = rng.standard_normal((n, self.noise), dtype=np.float32) if base is None else base
            xn = np.concatenate([x, noise], axis=1)
            out: F32 = self.nets["net"](xn)
            return out
        cfg = self.manifest["flow"]
        dim = len(self.outputs)
        total = 3 * cfg["bins"] - 1
        y = rng.standard_normal((n, dim), dtype=np.float32) if base is None else base
        if self._compiled is not None:
            return self._compiled.flow(x, y)
        for t in reversed(range(cfg["transforms"])):
            order = np.asarray(cfg["orders"][t])
            xt = np.zeros_like(y)
            for p in range(cfg["passes"]):
                cols = np.flatnonzero(order == p)
                phi = self.nets[f"t{t}p{p}"](np.concatenate([xt, x], axis=1))
                phi = phi.reshape(n, len(cols), total)
                xt[:, cols] = _rqs_inverse(phi, y[:, cols], cfg["bins"], cfg["bound"], cfg["slope"])
            y = xt
        return y

    def sample(self, x: F32, rng: np.random.Generator) -> Array:
        """One sample per row, in the physical target space (n, n_outputs)."""
        if self.targets is None:
            raise ModelFormatError(f"model {self.name} is a classifier: it has nothing to sample")
        return self.to_targets(self.sample_normal(x, rng))

    def to_targets(self, z: F32) -> Array:
        """Normal space -> physical targets (:meth:`TargetMap.inverse`, compiled when the
        backend is numba and the grid is the standard one)."""
        if self.targets is None:
            raise ModelFormatError(f"model {self.name} is a classifier: it has no targets")
        if self._compiled is not None:
            out = self._compiled.inverse(z)
            if out is not None:
                return out
        return self.targets.inverse(z)


def load_model(path: str | Path, backend: str = "auto", threads: int = 1) -> FlashModel:
    return FlashModel(Path(path), backend, threads)
