"""Training of the flash models (torch): reproducible, checkpointed, resumable, tracked.

:func:`train_all` trains every model of the chain from one training table
(:mod:`~flashlink.sim.flash.dataset`), exports each to the runtime format and writes the model
set (``chain.json``). For generators every family in the spec (``mlp``: energy-score
generator, ``flow``: zuko spline flow) is trained, exported and scored on the validation
events **through the exported runtime** (mean standardised W1 over the outputs and the
classifier two-sample AUC); the flow is kept unless the MLP generator is at least as good
(score within 10%), because the MLP is several times faster to sample.

* Reproducible: every model gets its own seed derived from the run seed and its name; the
  same seed and data give the same weights on the same machine (CPU kernels).
* Checkpoints: ``<out>/checkpoints/<model>-<family>.pt`` after every epoch (weights, optimiser,
  history, RNG states); ``resume=True`` continues from them, a finished model is reused.
* Progress and loss curves: a callback per epoch; ``<out>/<model>/loss.png`` and the losses in
  the manifest.
* Device: CPU by default, CUDA when present (``device="auto"``).
* The family not chosen is kept in ``<model>/alternatives/<family>/`` (same format).
* Tracking: :class:`~flashlink.sim.flash.tracking.Tracker` (local directory, or MLflow when a
  tracking URI is configured).
"""

from __future__ import annotations

__all__ = ["TrainOptions", "train_all", "train_model"]

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from flashlink.sim.flash.dataset import rows_of, split_mask, table_hash
from flashlink.sim.flash.errors import TrainingError
from flashlink.sim.flash.export import export_model, flow_layers, mlp_layers
from flashlink.sim.flash.models import CHAIN, ModelSpec, default_specs
from flashlink.sim.flash.nets import EnergyGenerator, energy_score, flow, mlp
from flashlink.sim.flash.preprocessing import Standardizer, TargetMap
from flashlink.sim.flash.pv import fit_pv_smearing
from flashlink.sim.flash.runtime import FlashModel
from flashlink.sim.flash.tracking import Tracker

Table = dict[str, npt.NDArray[Any]]
F32 = npt.NDArray[np.float32]
Progress = Callable[[str, int, int, float], None]


@dataclass
class TrainOptions:
    seed: int = 1
    device: str = "auto"
    resume: bool = True
    validation_fraction: float = 0.2
    #: multiply every model's epochs (tests use small values)
    epoch_scale: float = 1.0
    #: train only these models (default: the whole chain)
    only: tuple[str, ...] = ()
    specs: dict[str, ModelSpec] = field(default_factory=default_specs)
    threads: int = 0


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise TrainingError(f"device {name!r} is invalid; use auto, cpu or cuda[:N]") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(
            f"device {name!r} requested but this torch sees no CUDA device; use auto or cpu"
        )
    return device


def _matrix(table: Table, names: tuple[str, ...], rows: npt.NDArray[np.bool_]) -> F32:
    missing = [n for n in names if n not in table]
    if missing:
        raise TrainingError(f"the training table has no columns {missing}")
    return np.stack([np.asarray(table[n])[rows] for n in names], axis=1).astype(np.float32)


def _seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:4], "little")


def _labels(spec: ModelSpec, table: Table, rows: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    if spec.name == "acceptance":
        return table["accepted"][rows].astype(np.int64)
    if spec.name == "track_type":
        return table["reco_type"][rows].astype(np.int64)
    return table[spec.name][rows].astype(np.int64)


def _fit(
    module: torch.nn.Module,
    loss_fn: Callable[[list[torch.Tensor]], torch.Tensor],
    train: list[torch.Tensor],
    valid: list[torch.Tensor],
    *,
    spec: ModelSpec,
    epochs: int,
    checkpoint: Path,
    resume: bool,
    generator: torch.Generator,
    progress: Progress | None,
    label: str,
) -> dict[str, Any]:
    """Adam with a cosine schedule; keeps the weights of the best validation epoch."""
    opt = torch.optim.Adam(module.parameters(), lr=spec.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    history: dict[str, list[float]] = {"train": [], "valid": []}
    best: tuple[float, dict[str, torch.Tensor]] = (float("inf"), {})
    start = 0
    if resume and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        module.load_state_dict(state["module"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        history, start = state["history"], state["epoch"]
        best = (state["best_loss"], state["best"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
    n = len(train[0])
    for epoch in range(start, epochs):
        module.train()
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for k in range(0, n, spec.batch_size):
            idx = order[k : k + spec.batch_size]
            loss = loss_fn([t[idx] for t in train])
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        module.eval()
        with torch.no_grad():
            v = float(loss_fn(valid))
        history["train"].append(total / n)
        history["valid"].append(v)
        if v < best[0]:
            best = (v, {k: t.detach().clone() for k, t in module.state_dict().items()})
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "module": module.state_dict(),
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                "history": history,
                "epoch": epoch + 1,
                "best_loss": best[0],
                "best": best[1],
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
            },
            checkpoint,
        )
        if progress is not None:
            progress(label, epoch + 1, epochs, v)
    if best[1]:
        module.load_state_dict(best[1])
    return {"history": history, "best_valid": best[0], "epochs": epochs}


def _loss_plot(path: Path, histories: dict[str, dict[str, list[float]]]) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(1, len(histories), figsize=(4.5 * len(histories), 3.2), squeeze=False)
    for ax, (family, hist) in zip(axes[0], histories.items(), strict=True):
        ax.plot(range(1, len(hist["train"]) + 1), hist["train"], label="train")
        ax.plot(range(1, len(hist["valid"]) + 1), hist["valid"], label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.set_title(f"{path.parent.name} ({family})")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _score_generator(
    model: FlashModel, x: F32, y: npt.NDArray[np.float64], seed: int
) -> dict[str, float]:
    from flashlink.sim.validation.metrics import c2st_auc, w1_standardised  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    sample = model.sample(x, rng)
    w1 = [w1_standardised(sample[:, j], y[:, j]) for j in range(y.shape[1])]
    twins = np.arange(len(x))  # a sample and its reference row share the condition
    c2st = c2st_auc(
        np.concatenate([x, sample], 1),
        np.concatenate([x, y], 1),
        seed=seed,
        groups=(twins, twins),
    )
    return {"w1_mean": float(np.mean(w1)), "w1_max": float(np.max(w1)), **c2st}


def _score(metrics: dict[str, float]) -> float:
    """One number to rank generator families: W1 plus the C2ST excess over 0.5."""
    return metrics["w1_mean"] + max(metrics["auc"] - 0.5, 0.0)


def _epochs(epochs: int, min_steps: int, steps_per_epoch: int, scale: float) -> int:
    return max(1, round(max(epochs, -(-min_steps // steps_per_epoch)) * scale))


def _fit_family(
    family: str,
    spec: ModelSpec,
    std: Standardizer,
    data: tuple[list[torch.Tensor], list[torch.Tensor]],
    *,
    options: TrainOptions,
    checkpoint: Path,
    generator: torch.Generator,
    progress: Progress | None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Train one generator family; return the fit record, its exported layers and the
    family's manifest fields."""
    device = data[0][0].device
    common: dict[str, Any] = {
        "spec": spec,
        "checkpoint": checkpoint,
        "resume": options.resume,
        "generator": generator,
        "progress": progress,
        "label": f"{spec.name} ({family})",
    }
    steps_per_epoch = max(1, -(-len(data[0][0]) // spec.batch_size))
    if family == "mlp":
        g = EnergyGenerator(len(spec.inputs), len(spec.outputs), spec.hidden, spec.noise)
        g = g.to(device)
        epochs = _epochs(spec.epochs, spec.min_steps, steps_per_epoch, options.epoch_scale)
        fit = _fit(g, lambda b: energy_score(g, b[0], b[1]), *data, epochs=epochs, **common)
        return fit, {"net": mlp_layers(g.net.cpu(), std)}, {"noise": spec.noise}
    f = flow(
        len(spec.outputs),
        len(spec.inputs),
        transforms=spec.transforms,
        bins=spec.bins,
        hidden=spec.flow_hidden,
    ).to(device)
    epochs = _epochs(spec.flow_epochs, spec.flow_min_steps, steps_per_epoch, options.epoch_scale)
    fit = _fit(f, lambda b: -f(b[0]).log_prob(b[1]).mean(), *data, epochs=epochs, **common)
    nets, orders = flow_layers(f.cpu(), std, len(spec.outputs), 3 * spec.bins - 1)
    extra = {
        "flow": {
            "transforms": spec.transforms,
            "passes": 2,
            "bins": spec.bins,
            "bound": 5.0,
            "slope": 1e-3,
            "orders": orders,
        }
    }
    return fit, nets, extra


def train_model(  # noqa: PLR0915 - one recipe: rows, preprocessing, families, selection
    spec: ModelSpec,
    table: Table,
    out: Path,
    options: TrainOptions,
    *,
    data_hash: str,
    tracker: Tracker,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train, export and validate one model; return its manifest summary."""
    rows = rows_of(spec, table)
    valid_rows = split_mask(table, options.validation_fraction)
    tr, va = rows & ~valid_rows, rows & valid_rows
    if tr.sum() < 50 or va.sum() < 20:
        raise TrainingError(
            f"model {spec.name}: {int(tr.sum())} training / {int(va.sum())} validation rows "
            f"(rows={spec.rows!r}); give more detailed-simulation events"
        )
    device = _device(options.device)
    seed = _seed(options.seed, spec.name)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_tr, x_va = _matrix(table, spec.inputs, tr), _matrix(table, spec.inputs, va)
    std = Standardizer.fit(x_tr)
    t_tr = torch.from_numpy(std(x_tr)).to(device)
    t_va = torch.from_numpy(std(x_va)).to(device)
    epochs = max(1, round(spec.epochs * options.epoch_scale))
    base: dict[str, Any] = {
        "name": spec.name,
        "kind": spec.kind,
        "inputs": list(spec.inputs),
        "rows": spec.rows,
        "training": {
            "seed": options.seed,
            "model_seed": seed,
            "dataset_sha256": data_hash,
            "rows_train": int(tr.sum()),
            "rows_valid": int(va.sum()),
            "device": str(device),
            "epochs": epochs,
            "batch_size": spec.batch_size,
            "lr": spec.lr,
            "hidden": list(spec.hidden),
        },
        "preprocessing": {"inputs": {"standardizer": std.to_dict(), "folded": True}},
    }
    t0 = time.perf_counter()
    candidates = out / "candidates" / spec.name
    if spec.kind == "classifier":
        y_tr = torch.from_numpy(_labels(spec, table, tr)).to(device)
        y_va = torch.from_numpy(_labels(spec, table, va)).to(device)
        net = mlp(len(spec.inputs), len(spec.outputs), spec.hidden).to(device)
        ce = torch.nn.CrossEntropyLoss()
        fit = _fit(
            net,
            lambda b: ce(net(b[0]), b[1]),
            [t_tr, y_tr],
            [t_va, y_va],
            spec=spec,
            epochs=epochs,
            checkpoint=out / "checkpoints" / f"{spec.name}-mlp.pt",
            resume=options.resume,
            generator=gen,
            progress=progress,
            label=spec.name,
        )
        manifest: dict[str, Any] = {
            **base,
            "family": "mlp",
            "outputs": list(spec.outputs),
            "losses": {"mlp": fit["history"]},
        }
        manifest["training"]["seconds"] = time.perf_counter() - t0
        export_model(out / spec.name, manifest, {"net": mlp_layers(net.cpu(), std)})
        _loss_plot(out / spec.name / "loss.png", {"mlp": fit["history"]})
        tracker.log(spec.name, manifest["training"], {"valid_loss": fit["best_valid"]})
        return manifest
    y_tr_raw = _matrix(table, spec.outputs, tr).astype(np.float64)
    y_va_raw = _matrix(table, spec.outputs, va).astype(np.float64)
    np_rng = np.random.default_rng(seed)
    tmap = TargetMap.fit(y_tr_raw, list(spec.outputs), spec.integer, np_rng)
    z_tr = torch.from_numpy(tmap.forward(tmap.dequantise(y_tr_raw, np_rng))).to(device)
    z_va = torch.from_numpy(tmap.forward(tmap.dequantise(y_va_raw, np_rng))).to(device)
    base["preprocessing"]["targets"] = tmap.to_dict()
    results: dict[str, dict[str, Any]] = {}
    for family in spec.families:
        t1 = time.perf_counter()
        fit, nets, extra = _fit_family(
            family,
            spec,
            std,
            ([t_tr, z_tr], [t_va, z_va]),
            options=options,
            checkpoint=out / "checkpoints" / f"{spec.name}-{family}.pt",
            generator=gen,
            progress=progress,
        )
        manifest = {
            **base,
            **extra,
            "family": family,
            "outputs": list(spec.outputs),
            "losses": {family: fit["history"]},
        }
        manifest["training"] = {**base["training"], "seconds": time.perf_counter() - t1}
        path = export_model(candidates / family, manifest, nets)
        model = FlashModel(path, backend="numpy")
        metrics = _score_generator(model, x_va, y_va_raw, seed)
        results[family] = {"path": path, "metrics": metrics, "history": fit["history"]}
        tracker.log(f"{spec.name}-{family}", manifest["training"], metrics)
    chosen = "flow" if "flow" in results else "mlp"
    if "mlp" in results and "flow" in results:
        mlp_score = _score(results["mlp"]["metrics"])
        flow_score = _score(results["flow"]["metrics"])
        chosen = "mlp" if mlp_score <= 1.1 * flow_score else "flow"
    final = out / spec.name
    if final.exists():
        shutil.rmtree(final)
    shutil.copytree(results[chosen]["path"], final)
    # the other family stays in the set, so a user can trade fidelity for speed at inference
    # ('flashlink sim flash --family mlp') without retraining
    for other, info in results.items():
        if other != chosen:
            shutil.copytree(info["path"], final / "alternatives" / other)
    manifest = json.loads((final / "manifest.json").read_text())
    manifest["selection"] = {
        "chosen": chosen,
        "rule": "flow unless the mlp score (mean W1 + max(AUC - 0.5, 0)) is within 10%",
        "candidates": {k: v["metrics"] for k, v in results.items()},
    }
    manifest["losses"] = {k: v["history"] for k, v in results.items()}
    manifest["training"]["seconds"] = time.perf_counter() - t0
    (final / "manifest.json").write_text(json.dumps(manifest, indent=1, default=float) + "\n")
    _loss_plot(final / "loss.png", {k: v["history"] for k, v in results.items()})
    return dict(manifest)


def train_all(
    table: Table,
    out: str | Path,
    options: TrainOptions | None = None,
    *,
    pvs: Table | None = None,
    tracker: Tracker | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train the chain from a training table; write the model set into ``out``."""
    options = options or TrainOptions()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if options.threads:
        torch.set_num_threads(options.threads)
    unknown = [m for m in options.only if m not in options.specs]
    if unknown:
        raise TrainingError(f"unknown models {unknown}; valid models: {list(CHAIN)}")
    tracker = tracker or Tracker.local(out / "tracking")
    data_hash = table_hash(table)
    tracker.start({"seed": options.seed, "dataset_sha256": data_hash, "rows": len(table["pid"])})
    t0 = time.perf_counter()
    summary: dict[str, Any] = {}
    try:
        for name in CHAIN:
            if options.only and name not in options.only:
                continue
            manifest = train_model(
                options.specs[name],
                table,
                out,
                options,
                data_hash=data_hash,
                tracker=tracker,
                progress=progress,
            )
            summary[name] = {
                "family": manifest["family"],
                "seconds": manifest["training"]["seconds"],
                "selection": manifest.get("selection"),
            }
        chain: dict[str, Any] = {
            "format": "flashlink-flash-chain/1",
            "models": [m for m in CHAIN if (out / m / "manifest.json").exists()],
            "dataset_sha256": data_hash,
            "seed": options.seed,
            "training_seconds": time.perf_counter() - t0,
            "summary": summary,
        }
        if pvs is not None:
            chain["pv"] = fit_pv_smearing(pvs)
        elif (out / "chain.json").exists():
            chain["pv"] = json.loads((out / "chain.json").read_text()).get("pv")
        (out / "chain.json").write_text(json.dumps(chain, indent=1, default=float) + "\n")
        tracker.finish(out / "chain.json", chain["training_seconds"])
    finally:
        shutil.rmtree(out / "candidates", ignore_errors=True)
    return chain
