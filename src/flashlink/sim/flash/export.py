"""Export trained torch models to the runtime format: ``weights.npz`` + ONNX + manifest.

Every network becomes a list of dense layers ``(W, b)`` (zuko's masked layers with their masks
applied), with the inputs' standardisation folded into the first layer. The ONNX graphs are
written directly with ``onnx.helper`` (Gemm + Relu, opset 17, IR version 9 so that
onnxruntime >= 1.17 reads them) instead of tracing torch, so the export does not depend on the
torch exporter and is byte-identical for the same weights.
"""

from __future__ import annotations

__all__ = ["export_model", "flow_layers", "mlp_layers"]

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from flashlink.sim.flash.preprocessing import Standardizer
from flashlink.sim.flash.runtime import FORMAT

F32 = npt.NDArray[np.float32]
Layers = list[tuple[F32, F32]]


def _fold(layers: Layers, std: Standardizer, offset: int) -> Layers:
    """Fold ``(x - mean) / std`` of input columns ``offset:`` into the first layer."""
    w, b = layers[0]
    cols = slice(offset, offset + len(std.mean))
    # W'_i = W_i / std_i and b' = b - sum_i (mean_i / std_i) W_i, with the original rows W_i
    folded_b = (b - (std.mean / std.std) @ w[cols]).astype(np.float32)
    folded_w = w.copy()
    folded_w[cols] = w[cols] / std.std[:, None]
    return [(folded_w.astype(np.float32), folded_b), *layers[1:]]


def mlp_layers(seq: nn.Sequential, std: Standardizer, offset: int = 0) -> Layers:
    """Dense layers of a Linear/ReLU sequence, standardisation of inputs ``offset:`` folded."""
    layers: Layers = []
    for module in seq:
        if isinstance(module, nn.Linear):
            weight = module.weight.detach().cpu().numpy().T.astype(np.float32)
            bias = module.bias.detach().cpu().numpy().astype(np.float32)
            mask = getattr(module, "mask", None)  # zuko's MaskedLinear: W * mask
            if isinstance(mask, torch.Tensor):
                weight = weight * mask.detach().cpu().numpy().T.astype(np.float32)
            layers.append((weight, bias))
        elif not isinstance(module, nn.ReLU):
            raise TypeError(f"cannot export layer {module!r}: only Linear and ReLU are supported")
    return _fold(layers, std, offset)


def flow_layers(
    flow: Any, std: Standardizer, features: int, params_per_feature: int
) -> tuple[dict[str, Layers], list[list[int]]]:
    """Per coupling transform k and pass p, the conditioner MLP ``t{k}p{p}`` restricted to the
    outputs of the features that pass finalises, and each transform's pass per feature.

    zuko inverts a coupling transform with two passes over *all* features, of which the
    first only gets the first group right and the second recomputes it; evaluating only the
    group a pass determines gives the same result with half of the spline work and a smaller
    last layer (the equality with torch is tested)."""
    nets: dict[str, Layers] = {}
    orders: list[list[int]] = []
    for k, t in enumerate(flow.transform.transforms):
        layers = mlp_layers(t.hyper, std, offset=features)
        order = [int(v) for v in t.order.tolist()]
        orders.append(order)
        for p in sorted(set(order)):
            feats = [f for f in range(features) if order[f] == p]
            cols = np.concatenate(
                [np.arange(f * params_per_feature, (f + 1) * params_per_feature) for f in feats]
            )
            w, b = layers[-1]
            nets[f"t{k}p{p}"] = [*layers[:-1], (np.ascontiguousarray(w[:, cols]), b[cols])]
    return nets, orders


def _onnx(layers: Layers, name: str) -> onnx.ModelProto:
    nodes, inits, current = [], [], "x"
    for k, (w, b) in enumerate(layers):
        inits += [numpy_helper.from_array(w, f"W{k}"), numpy_helper.from_array(b, f"b{k}")]
        nodes.append(helper.make_node("Gemm", [current, f"W{k}", f"b{k}"], [f"h{k}"]))
        current = f"h{k}"
        if k < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [current], [f"r{k}"]))
            current = f"r{k}"
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", layers[0][0].shape[0]])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, ["n", layers[-1][0].shape[1]])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="flashlink"
    )
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("flashlink", "numpy", "torch", "zuko", "onnx", "onnxruntime"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def export_model(out: Path, manifest: dict[str, Any], nets: dict[str, Layers]) -> Path:
    """Write ``manifest.json``, ``weights.npz`` and ``<net>.onnx`` for each net into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, F32] = {}
    layout: dict[str, Any] = {}
    for net, layers in nets.items():
        for k, (w, b) in enumerate(layers):
            arrays[f"{net}.{k}.W"] = w
            arrays[f"{net}.{k}.b"] = b
        layout[net] = {"layers": [list(w.shape) for w, _ in layers]}
        onnx.save(_onnx(layers, f"{manifest['name']}_{net}"), str(out / f"{net}.onnx"))
    np.savez_compressed(out / "weights.npz", **arrays)  # type: ignore[arg-type]
    full = {"format": FORMAT, **manifest, "nets": layout, "versions": versions()}
    (out / "manifest.json").write_text(json.dumps(full, indent=1, default=float) + "\n")
    return out
