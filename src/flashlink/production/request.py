"""The production request: what to produce, where, with which resources (a YAML file).

Example (``examples/productions/bu2jpsik-small.yaml``)::

    name: bu2jpsik-small
    event: {kind: gun, channel: Bu2JpsiK}
    events: 300
    events_per_job: 100
    oversampling: 1
    seed: 1000
    models: shipped
    site: local
    resources: {cpu: "1", memory: 1Gi}
    output: /data/productions/bu2jpsik-small
    reference: {events: 100}

Every field is checked when the file is read; errors name the field by its path, the value
seen and what would be valid (:class:`~flashlink.production.errors.RequestError`).
"""

from __future__ import annotations

__all__ = [
    "EventSpec",
    "ProductionRequest",
    "ReferenceSpec",
    "Resources",
    "load_request",
    "parse_request",
]

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from flashlink.kube import parse_quantity
from flashlink.kube.errors import KubeError
from flashlink.production.errors import RequestError

GUN_CHANNELS = ("Bu2JpsiK", "Bd2Kpi", "Dst2D0pi")
"""Gun channels with a signal decay the ntuple step can reconstruct."""
PYTHIA_PROCESSES = ("minbias", "bbbar")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventSpec(_Strict):
    """Which events: a particle gun making one signal decay, or full Pythia 8 events."""

    kind: Literal["gun", "pythia"] = Field(description="gun (signal decay only) or pythia")
    channel: str = Field(default="Bu2JpsiK", description="signal decay (ntuple candidates)")
    process: str | None = Field(default=None, description="pythia: minbias or bbbar")

    @model_validator(mode="after")
    def _check(self) -> EventSpec:
        if self.channel not in GUN_CHANNELS:
            raise ValueError(
                f"channel {self.channel!r} is not a decay with an ntuple; use one of "
                + ", ".join(GUN_CHANNELS)
            )
        if self.kind == "pythia" and self.process not in PYTHIA_PROCESSES:
            raise ValueError(
                f"process {self.process!r}: a pythia production needs process: "
                + " or ".join(PYTHIA_PROCESSES)
            )
        if self.kind == "gun" and self.process is not None:
            raise ValueError("process is only for kind: pythia (a gun makes the channel's decay)")
        return self


class Resources(_Strict):
    """What each job's Pod requests (Kubernetes quantities)."""

    cpu: str = Field(default="1", description="CPU request, e.g. 1 or 500m")
    memory: str = Field(default="2Gi", description="memory request, e.g. 2Gi")

    @field_validator("cpu", "memory", mode="before")
    @classmethod
    def _quantity(cls, value: Any) -> str:
        text = str(value)
        try:
            parse_quantity(text)
        except (KubeError, ValueError) as exc:
            raise ValueError(f"{text!r} is not a Kubernetes quantity (e.g. 2, 500m, 2Gi)") from exc
        return text


class ReferenceSpec(_Strict):
    """The reference comparison: detailed simulation of a sample of the same production."""

    events: int = Field(default=200, ge=0, description="events in the reference sample (0: none)")


class ProductionRequest(_Strict):
    """One production. Field docs are the user documentation (docs/production.md)."""

    name: str = Field(description="lower-case DNS label: names the Pods and the outputs")
    event: EventSpec
    events: int = Field(gt=0, description="events to produce in total")
    events_per_job: int = Field(gt=0, description="events per job (one Pod each)")
    simulation: Literal["flash", "detailed"] = Field(
        default="flash", description="flash models, or the detailed reference simulation"
    )
    oversampling: int = Field(default=1, ge=1, le=100, description="flash replicas per event")
    seed: int = Field(default=1, ge=0, description="first seed; job i uses seed + i")
    models: str = Field(default="shipped", description="'shipped' or a model-set directory")
    family: str = Field(
        default="auto",
        description="flash generators: auto, mlp, flow or per model (e.g. covariance=mlp)",
    )
    site: str = Field(default="local", description="the plugin site (toleration pool.vk.io)")
    resources: Resources = Field(default_factory=Resources)
    output: str = Field(description="output directory or s3://bucket/prefix")
    reference: ReferenceSpec = Field(default_factory=ReferenceSpec)
    retries: int = Field(default=2, ge=0, le=10, description="resubmissions of a failed job")
    image: str = Field(
        default="ghcr.io/flashlink/payload:latest", description="the payload image of every job"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"{value!r} is not a lower-case DNS label of at most 40 characters "
                "(a-z, 0-9, '-'; e.g. bu2jpsik-1m)"
            )
        return value

    @field_validator("family")
    @classmethod
    def _family(cls, value: str) -> str:
        from flashlink.sim.flash.chain import parse_families  # noqa: PLC0415 - numpy, lazily
        from flashlink.sim.flash.errors import ModelFormatError  # noqa: PLC0415

        try:
            parse_families(value)
        except ModelFormatError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("output")
    @classmethod
    def _output(cls, value: str) -> str:
        if value.startswith("s3://"):
            if not value[5:].strip("/"):
                raise ValueError(f"{value!r} names no bucket; use s3://bucket/prefix")
            return value.rstrip("/")
        if "://" in value:
            raise ValueError(f"{value!r}: use a directory path or s3://bucket/prefix")
        if not value.startswith("/"):
            raise ValueError(f"{value!r} is relative; give an absolute directory")
        return value.rstrip("/") or "/"

    @model_validator(mode="after")
    def _sizes(self) -> ProductionRequest:
        if self.simulation == "detailed" and self.oversampling != 1:
            raise ValueError("oversampling applies to simulation: flash only; set it to 1")
        if self.events_per_job > self.events:
            raise ValueError(
                f"events_per_job ({self.events_per_job}) is larger than events ({self.events})"
            )
        return self

    @property
    def n_jobs(self) -> int:
        return -(-self.events // self.events_per_job)


def _path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def parse_request(data: Any, source: str = "(request)") -> ProductionRequest:
    """A request from decoded YAML; :class:`RequestError` names every bad field."""
    if not isinstance(data, dict):
        raise RequestError(source, [f"(top level): expected a mapping, got {type(data).__name__}"])
    try:
        return ProductionRequest.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field (check the spelling; see docs/production.md)"
            elif err["type"] == "missing":
                msg = "missing (required)"
            problems.append(
                f"{_path(err['loc'])}: {msg} (got {err.get('input')!r})"
                if err["type"] not in ("missing",)
                else f"{_path(err['loc'])}: {msg}"
            )
        raise RequestError(source, problems) from None


def load_request(path: Path) -> ProductionRequest:
    """Read and check a request file."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RequestError(str(path), [f"cannot read the file: {exc}"]) from exc
    return parse_request(data, str(path))
