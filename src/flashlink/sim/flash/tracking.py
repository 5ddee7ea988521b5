"""Where training parameters, metrics and artifacts go: a local directory, or MLflow.

The flagship's cloud "logging" step is an MLflow tracking server. :meth:`Tracker.create`
uses it when a tracking URI is given (``--mlflow-uri`` or ``MLFLOW_TRACKING_URI``) and the
optional ``mlflow`` extra is installed; otherwise everything goes to ``<out>/tracking/``
(``params.json``, ``metrics.jsonl``, one JSON object per model and family), which needs no
server and travels with the model set.
"""

from __future__ import annotations

__all__ = ["Tracker"]

import json
import os
import time
from pathlib import Path
from typing import Any

from flashlink.sim.flash.errors import require


class Tracker:
    def __init__(self, directory: Path, mlflow_uri: str | None = None) -> None:
        self.directory = directory
        self.mlflow_uri = mlflow_uri
        self._mlflow: Any = None

    @classmethod
    def local(cls, directory: Path) -> Tracker:
        return cls(directory)

    @classmethod
    def create(cls, directory: Path, mlflow_uri: str | None = None) -> Tracker:
        uri = mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI") or None
        return cls(directory, uri)

    def start(self, params: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "params.json").write_text(json.dumps(params, indent=1) + "\n")
        if self.mlflow_uri:
            self._mlflow = require("mlflow", extra="mlflow")
            self._mlflow.set_tracking_uri(self.mlflow_uri)
            self._mlflow.set_experiment("flashlink-flash")
            self._mlflow.start_run()
            self._mlflow.log_params(params)

    def log(self, model: str, params: dict[str, Any], metrics: dict[str, float]) -> None:
        record = {"time": time.time(), "model": model, "params": params, "metrics": metrics}
        with (self.directory / "metrics.jsonl").open("a") as handle:
            handle.write(json.dumps(record, default=float) + "\n")
        if self._mlflow is not None:
            self._mlflow.log_metrics({f"{model}.{k}": float(v) for k, v in metrics.items()})

    def finish(self, artifact: Path, seconds: float) -> None:
        if self._mlflow is not None:
            self._mlflow.log_metric("training_seconds", seconds)
            self._mlflow.log_artifact(str(artifact))
            self._mlflow.end_run()
