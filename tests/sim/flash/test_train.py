"""Training end to end on a small real reference sample: reproducible, resumable, exported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from flashlink.sim.detector.pipeline import run_detailed
from flashlink.sim.flash.dataset import build_training_table, split_mask, table_hash
from flashlink.sim.flash.errors import TrainingError
from flashlink.sim.flash.models import default_specs
from flashlink.sim.flash.runtime import FlashModel
from flashlink.sim.flash.train import TrainOptions, train_all
from flashlink.sim.generation import generate, parse_generator_config

ONLY = ("acceptance", "resolution")


@pytest.fixture(scope="module")
def pion_sample(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = str(tmp_path_factory.mktemp("pions") / "detailed")
    cfg = parse_generator_config(
        {"mode": "gun", "channel": "pi", "spectrum": {"kind": "log_p", "p_min": 2, "p_max": 50}}
    )
    run_detailed(generate(cfg, 500, 11, chunk_size=250), out, seed=11)
    return out


def _small_specs() -> dict[str, object]:
    specs = default_specs()
    return {
        name: spec.with_options(
            hidden=(16,),
            flow_hidden=(16,),
            transforms=1,
            batch_size=256,
            min_steps=0,
            flow_min_steps=0,
        )
        for name, spec in specs.items()
    }


def _options(**kw: object) -> TrainOptions:
    return TrainOptions(seed=5, only=ONLY, specs=_small_specs(), **kw)  # type: ignore[arg-type]


def test_training_table_joins_particles_to_their_tracks(pion_sample: str) -> None:
    table = build_training_table([pion_sample])
    reco = table["reco_type"] > 0
    assert reco.mean() > 0.4
    # residuals are small compared with the values: the join found the right track
    assert np.median(np.abs(table["dqop"][reco])) < 0.01
    assert np.all(np.isnan(table["dx"][~reco]))
    assert np.all(table["accepted"][reco] == 1)
    valid = split_mask(table)
    assert 0.1 < valid.mean() < 0.3
    # whole events are on one side of the split
    for event in np.unique(table["event_id"])[:50]:
        assert len(set(valid[table["event_id"] == event])) == 1
    assert table_hash(table) == table_hash(build_training_table([pion_sample]))


def test_train_export_resume_and_reproduce(pion_sample: str, tmp_path: Path) -> None:
    table = build_training_table([pion_sample])
    epochs: list[tuple[str, int]] = []

    def progress(label: str, epoch: int, total: int, loss: float) -> None:
        assert np.isfinite(loss)
        epochs.append((label, epoch))

    out = tmp_path / "models"
    chain = train_all(table, out, _options(epoch_scale=0.15), progress=progress)
    assert chain["models"] == list(ONLY)
    assert chain["dataset_sha256"] == table_hash(table)
    assert {label for label, _ in epochs} == {"acceptance", "resolution (mlp)", "resolution (flow)"}
    manifest = json.loads((out / "resolution" / "manifest.json").read_text())
    assert manifest["selection"]["chosen"] in {"mlp", "flow"}
    assert set(manifest["selection"]["candidates"]) == {"mlp", "flow"}
    assert manifest["training"]["dataset_sha256"] == table_hash(table)
    assert manifest["versions"]["torch"].startswith("2.13")
    assert (out / "resolution" / "loss.png").stat().st_size > 1000
    assert (out / "tracking" / "metrics.jsonl").read_text().count("\n") >= len(ONLY)
    # a resumed run finds every epoch done: no training step, identical exports
    epochs.clear()
    weights = (out / "acceptance" / "weights.npz").read_bytes()
    train_all(table, out, _options(epoch_scale=0.15), progress=progress)
    assert epochs == []
    assert (out / "acceptance" / "weights.npz").read_bytes() == weights
    # a fresh run with the same seed reproduces the weights
    again = tmp_path / "again"
    train_all(
        table,
        again,
        TrainOptions(seed=5, only=("acceptance",), specs=_small_specs(), epoch_scale=0.15),  # type: ignore[arg-type]
    )
    a = FlashModel(out / "acceptance", "numpy").nets["net"].layers
    b = FlashModel(again / "acceptance", "numpy").nets["net"].layers
    for (wa, ba), (wb, bb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(wa, wb)
        np.testing.assert_array_equal(ba, bb)


def test_bad_training_requests(pion_sample: str, tmp_path: Path) -> None:
    table = build_training_table([pion_sample])
    with pytest.raises(TrainingError, match="unknown models"):
        train_all(table, tmp_path, TrainOptions(only=("tracking",)))
    with pytest.raises(TrainingError, match="pid_K: 0 training"):
        train_all(table, tmp_path, TrainOptions(only=("pid_K",), specs=_small_specs()))  # type: ignore[arg-type]
    with pytest.raises(TrainingError, match="device"):
        train_all(table, tmp_path, _options(device="tpu:7"))
    if not torch.cuda.is_available():
        with pytest.raises(TrainingError, match="no CUDA device"):
            train_all(table, tmp_path, _options(device="cuda"))
