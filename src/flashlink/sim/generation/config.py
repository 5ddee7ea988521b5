"""Generator configuration: full Pythia events or a particle gun with a forced signal decay.

One pydantic model per mode, selected by ``mode``; :func:`parse_generator_config` turns a plain
mapping (from YAML, TOML or the CLI) into a model and reports a bad field as
:class:`~flashlink.sim.errors.SimConfigError` naming the field, the value and what is valid.
"""

from __future__ import annotations

__all__ = [
    "GeneratorConfig",
    "GunConfig",
    "LogPSpectrum",
    "PtExpSpectrum",
    "PythiaConfig",
    "parse_generator_config",
]

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from flashlink.sim.errors import SimConfigError
from flashlink.sim.generation.channels import CHANNELS


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogPSpectrum(_Model):
    """Momentum flat in log(p) between ``p_min`` and ``p_max`` (GeV), the usual training gun."""

    kind: Literal["log_p"] = "log_p"
    p_min: float = Field(2.0, gt=0.0, description="lowest momentum, GeV")
    p_max: float = Field(200.0, gt=0.0, description="highest momentum, GeV")

    @model_validator(mode="after")
    def _ordered(self) -> LogPSpectrum:
        if self.p_max <= self.p_min:
            raise ValueError(f"p_max ({self.p_max}) must be larger than p_min ({self.p_min})")
        return self


class PtExpSpectrum(_Model):
    """Transverse momentum ``pt_min + Exp(pt_mean)`` (GeV), close to b-hadron production."""

    kind: Literal["pt_exp"] = "pt_exp"
    pt_min: float = Field(1.0, ge=0.0, description="pT offset, GeV")
    pt_mean: float = Field(5.0, gt=0.0, description="mean of the exponential part, GeV")


Spectrum = Annotated[LogPSpectrum | PtExpSpectrum, Field(discriminator="kind")]


class GunConfig(_Model):
    """A particle gun: one particle per event, decayed by Pythia through a forced channel."""

    mode: Literal["gun"] = "gun"
    channel: str = Field(
        "Bu2JpsiK", description=f"signal channel or single particle, one of {sorted(CHANNELS)}"
    )
    spectrum: Spectrum = PtExpSpectrum(pt_min=1.0, pt_mean=5.0)
    eta_min: float = Field(2.0, description="lowest pseudorapidity")
    eta_max: float = Field(5.0, description="highest pseudorapidity")
    charge_conjugate: bool = Field(
        True, description="make the antiparticle in half of the events (flavour-symmetric sample)"
    )
    sigma_xy: float = Field(0.04, ge=0.0, description="beam-spot width in x and y, mm")
    sigma_z: float = Field(45.0, ge=0.0, description="luminous-region length, mm")

    @model_validator(mode="after")
    def _check(self) -> GunConfig:
        if self.channel not in CHANNELS:
            raise ValueError(
                f"channel {self.channel!r} is unknown; valid channels: {sorted(CHANNELS)}"
            )
        if self.eta_max <= self.eta_min:
            raise ValueError(f"eta_max ({self.eta_max}) must exceed eta_min ({self.eta_min})")
        return self


class PythiaConfig(_Model):
    """Full pp events at the LHC Run-3 energy: min-bias or b-bbar production."""

    mode: Literal["minbias", "bbbar"] = "minbias"
    ecm: float = Field(13600.0, gt=0.0, description="pp centre-of-mass energy, GeV")
    pthat_min: float = Field(5.0, ge=0.0, description="hard-process pT cut for bbbar, GeV")
    sigma_xy: float = Field(0.04, ge=0.0, description="beam-spot width in x and y, mm")
    sigma_z: float = Field(45.0, ge=0.0, description="luminous-region length, mm")
    extra_settings: tuple[str, ...] = Field(
        (), description="extra Pythia readString lines, e.g. 'PartonLevel:MPI = off'"
    )


GeneratorConfig = Annotated[GunConfig | PythiaConfig, Field(discriminator="mode")]
_ADAPTER: TypeAdapter[GunConfig | PythiaConfig] = TypeAdapter(GeneratorConfig)


def parse_generator_config(data: Mapping[str, Any]) -> GunConfig | PythiaConfig:
    """Validate a mapping (``mode`` is one of gun, minbias, bbbar) into a generator config."""
    if "mode" not in data:
        raise SimConfigError("generator config needs 'mode': one of 'gun', 'minbias', 'bbbar'")
    try:
        return _ADAPTER.validate_python(dict(data))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}={err.get('input')!r}: {err['msg']}"
            for err in exc.errors()
        )
        raise SimConfigError(f"invalid generator config: {problems}") from exc
