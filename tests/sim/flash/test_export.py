"""Preprocessing, export and runtime: properties checked over every network family at once."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from flashlink.sim.flash import default_model_dir
from flashlink.sim.flash.errors import ModelFormatError
from flashlink.sim.flash.export import export_model, flow_layers, mlp_layers
from flashlink.sim.flash.nets import EnergyGenerator, energy_score, flow, mlp
from flashlink.sim.flash.preprocessing import Standardizer, TargetMap
from flashlink.sim.flash.runtime import FlashModel

N_IN, N_OUT = 5, 3


def _inputs(n: int = 400, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # different scales per column: the folded standardisation must undo them
    return (rng.normal(size=(n, N_IN)) * [1, 10, 100, 0.01, 3] + [0, 5, -50, 1, 2]).astype(
        np.float32
    )


def test_target_map_round_trip_integers_and_spikes() -> None:
    rng = np.random.default_rng(1)
    n = 5000
    y = np.stack(
        [
            rng.normal(3, 2, n),
            rng.poisson(4, n).astype(float),
            np.where(rng.random(n) < 0.3, 0.0, rng.exponential(5, n)),  # spike at 0
        ],
        axis=1,
    )
    tmap = TargetMap.fit(y, ["g", "k", "s"], [False, True, False], rng)
    assert tmap.spikes[2] == [0.0]
    assert tmap.spikes[1] == []
    z = tmap.forward(tmap.dequantise(y, rng))
    assert abs(float(np.mean(z[:, 0]))) < 0.05
    assert 0.9 < float(np.std(z[:, 0])) < 1.1
    back = tmap.inverse(z, clip=None)
    np.testing.assert_array_equal(back[:, 1], y[:, 1])  # integers come back exactly
    assert np.mean(back[:, 2] == 0.0) == pytest.approx(0.3, abs=0.03)
    np.testing.assert_allclose(back[:, 0], y[:, 0], atol=0.05)
    again = TargetMap.from_dict(tmap.to_dict())
    np.testing.assert_array_equal(again.inverse(z, clip=None), back)
    # generated draws beyond 4 sigma stay at the 4-sigma quantile, not the sample extreme
    assert tmap.inverse(np.full((1, 3), 4.9, np.float32))[0, 0] < y[:, 0].max()


def _classifier(std: Standardizer) -> tuple[torch.nn.Module, dict[str, Any]]:
    net = mlp(N_IN, 4, (16, 16))
    return net, {"net": mlp_layers(net, std)}


@pytest.mark.parametrize("backend", ["numpy", "onnx", "numba"])
@pytest.mark.parametrize("family", ["classifier", "mlp", "flow"])
def test_exported_model_equals_torch(tmp_path: Path, family: str, backend: str) -> None:
    torch.manual_seed(3)
    x = _inputs()
    std = Standardizer.fit(x)
    xs = torch.from_numpy(std(x))
    rng = np.random.default_rng(0)
    manifest: dict[str, Any] = {
        "name": f"m_{family}",
        "inputs": [f"i{k}" for k in range(N_IN)],
        "rows": "all",
    }
    if family == "classifier":
        net, nets = _classifier(std)
        manifest |= {"kind": "classifier", "family": "mlp", "outputs": ["a", "b", "c", "d"]}
        export_model(tmp_path, manifest, nets)
        model = FlashModel(tmp_path, backend)
        with torch.no_grad():
            expected = torch.softmax(net(xs), dim=1).numpy()
        np.testing.assert_allclose(model.probabilities(x), expected, atol=1e-5)
        return
    y = rng.normal(size=(len(x), N_OUT))
    tmap = TargetMap.fit(y, ["a", "b", "c"], [False] * N_OUT, rng)
    manifest |= {
        "kind": "generator",
        "outputs": ["a", "b", "c"],
        "preprocessing": {"targets": tmap.to_dict()},
    }
    base = rng.standard_normal((len(x), 4 if family == "mlp" else N_OUT)).astype(np.float32)
    if family == "mlp":
        gen = EnergyGenerator(N_IN, N_OUT, (16, 16), noise=4)
        manifest |= {"family": "mlp", "noise": 4}
        export_model(tmp_path, manifest, {"net": mlp_layers(gen.net, std)})
        with torch.no_grad():
            expected = gen(xs, torch.from_numpy(base)).numpy()
    else:
        f = flow(N_OUT, N_IN, transforms=2, bins=6, hidden=(16, 16))
        # move the splines away from the identity so the test checks real transforms
        with torch.no_grad():
            for p in f.parameters():
                p.add_(0.3 * torch.randn_like(p))
        nets, orders = flow_layers(f, std, N_OUT, 3 * 6 - 1)
        assert set(nets) == {"t0p0", "t0p1", "t1p0", "t1p1"}
        manifest |= {
            "family": "flow",
            "flow": {
                "transforms": 2,
                "passes": 2,
                "bins": 6,
                "bound": 5.0,
                "slope": 1e-3,
                "orders": orders,
            },
        }
        export_model(tmp_path, manifest, nets)
        with torch.no_grad():
            expected = f(xs).transform.inv(torch.from_numpy(base)).numpy()
    model = FlashModel(tmp_path, backend)
    got = model.sample_normal(x, rng, base=base)
    np.testing.assert_allclose(got, expected, atol=2e-4, rtol=1e-4)
    # the physical sample is the inverse target map of the normal one
    np.testing.assert_allclose(model.sample(x, np.random.default_rng(5)).shape, (len(x), N_OUT))


def test_sampling_is_deterministic_under_a_seed(tmp_path: Path) -> None:
    x = _inputs()
    std = Standardizer.fit(x)
    gen = EnergyGenerator(N_IN, N_OUT, (8,), noise=2)
    rng = np.random.default_rng(0)
    tmap = TargetMap.fit(rng.normal(size=(100, N_OUT)), ["a", "b", "c"], [False] * 3, rng)
    manifest = {
        "name": "g",
        "kind": "generator",
        "family": "mlp",
        "noise": 2,
        "inputs": ["i"] * N_IN,
        "outputs": ["a", "b", "c"],
        "rows": "all",
        "preprocessing": {"targets": tmap.to_dict()},
    }
    export_model(tmp_path, manifest, {"net": mlp_layers(gen.net, std)})
    model = FlashModel(tmp_path, "numpy")
    a = model.sample(x, np.random.default_rng(7))
    b = model.sample(x, np.random.default_rng(7))
    c = model.sample(x, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_energy_score_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    gen = EnergyGenerator(N_IN, N_OUT, (8, 8), noise=3)
    loss = energy_score(gen, torch.randn(64, N_IN), torch.randn(64, N_OUT))
    loss.backward()  # type: ignore[no-untyped-call]
    for name, p in gen.named_parameters():
        assert p.grad is not None, name
        assert torch.any(p.grad != 0), name


def test_energy_score_is_minimised_by_the_true_law() -> None:
    """A proper scoring rule: a generator of the right spread scores better than one too
    narrow or too wide (conditionally Gaussian toy, exact noise injected)."""
    torch.manual_seed(0)
    target = torch.randn(20_000, 1)

    class Fixed(EnergyGenerator):
        def __init__(self, scale: float) -> None:
            super().__init__(1, 1, (1,), noise=1)
            self.scale = scale

        def forward(self, context: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
            return self.scale * torch.randn(context.shape[0], 1)

    ctx = torch.zeros(20_000, 1)
    scores = {s: float(energy_score(Fixed(s), ctx, target)) for s in (0.5, 1.0, 2.0)}
    assert scores[1.0] < scores[0.5]
    assert scores[1.0] < scores[2.0]


def test_bad_model_directories_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match="manifest"):
        FlashModel(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "other/9"}')
    with pytest.raises(ModelFormatError, match="re-export"):
        FlashModel(tmp_path)
    with pytest.raises(ModelFormatError, match="backend"):
        FlashModel(tmp_path, backend="tensorflow")


def test_target_map_ignores_extreme_outliers() -> None:
    """A failed fit's chi2/ndof of 1e9 must not distort the map of the ordinary values."""
    rng = np.random.default_rng(2)
    y = rng.gamma(4.0, 0.25, (20_000, 1))
    y[:5, 0] = 1e9
    tmap = TargetMap.fit(y, ["chi2ndof"], [False], rng)
    z = tmap.forward(y[5:])
    assert abs(float(np.mean(z))) < 0.05
    assert 0.95 < float(np.std(z)) < 1.05
    # only the values sharing the outermost bin with the outliers lose precision
    rel = np.abs(tmap.inverse(z, clip=None)[:, 0] / y[5:, 0] - 1)
    far, edge = tmap.inverse(np.array([[4.5], [4.0]], np.float32))[:, 0]
    assert far == edge
    assert np.mean(rel > 1e-3) <= 2e-4


def test_numba_flow_in_batches_of_any_size_equals_one_batch() -> None:
    """The numba backend reuses its conditioner buffers from call to call: batches of any
    size (a chunk's last tile has any) give what one batch gives, and the buffers kept stay
    bounded."""
    model = FlashModel(default_model_dir() / "covariance", "numba")
    sizes = [1, 7, 999, 1000, 1001, 17, 575, 1000, 3]
    n = sum(sizes)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, len(model.inputs))).astype(np.float32)
    base = rng.normal(size=(n, len(model.outputs))).astype(np.float32)
    whole = model.sample_normal(x, rng, base=base.copy())
    edges = np.cumsum([0, *sizes])
    parts = [
        model.sample_normal(x[a:b], rng, base=base[a:b].copy())
        for a, b in itertools.pairwise(edges)
    ]
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=2e-5, rtol=1e-5)
    assert model._compiled is not None
    assert max(len(net._bufs) for net in model._compiled.nets_t.values()) <= 4
