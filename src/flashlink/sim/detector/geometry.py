"""Detector description: the documented ``geometry.toml`` read into validated, flat arrays.

The TOML (shipped as package data, see its header for every field) lists layer families; this
module expands them into one row per plane, sorted by z, which is what the transport and the
Kalman fit iterate over. A bad field raises :class:`~flashlink.sim.errors.SimConfigError` with
the layer, the field, the value and what is valid.
"""

from __future__ import annotations

__all__ = ["KINDS", "Geometry", "Planes", "load_geometry"]

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flashlink.sim.errors import SimConfigError

KINDS = ("pixel", "strip", "rich", "ecal", "hcal", "absorber", "muon")
#: integer codes of the kinds in :class:`Planes`
PIXEL, STRIP, RICH, ECAL, HCAL, ABSORBER, MUON = range(7)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Layer(_Model):
    name: str
    kind: Literal["pixel", "strip", "rich", "ecal", "hcal", "absorber", "muon"]
    z: list[float] = Field(min_length=1)
    stereo_deg: list[float] | None = None
    half_x: float = Field(gt=0)
    half_y: float = Field(gt=0)
    hole_r: float = Field(0.0, ge=0)
    x0_frac: float = Field(ge=0)
    lambda_frac: float = Field(0.0, ge=0)
    material: str
    thickness_mm: float = Field(gt=0)
    resolution: float = Field(0.0, ge=0)
    efficiency: float = Field(1.0, ge=0, le=1)
    noise_hits: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> Layer:
        if self.kind == "strip" and (
            self.stereo_deg is None or len(self.stereo_deg) != len(self.z)
        ):
            raise ValueError("a strip layer needs stereo_deg with one angle per z")
        if self.kind in ("pixel", "strip", "muon") and self.resolution <= 0:
            raise ValueError(f"a {self.kind} layer needs resolution > 0 (mm)")
        return self


class Magnet(_Model):
    b0: float
    z_in: float
    z_out: float
    width: float = Field(gt=0)
    curvature: float = Field(0.0, ge=0)
    z_min: float
    z_max: float
    grid_step: tuple[float, float, float]
    half_x: float = Field(gt=0)
    half_y: float = Field(gt=0)
    rk_step: float = Field(gt=0)

    @model_validator(mode="after")
    def _check(self) -> Magnet:
        if not self.z_min < self.z_in < self.z_out < self.z_max:
            raise ValueError("need z_min < z_in < z_out < z_max")
        if min(self.grid_step) <= 0:
            raise ValueError(f"grid_step must be positive, got {self.grid_step}")
        return self


class Rich(_Model):
    n_minus_1: float = Field(gt=0)
    length_mm: float = Field(gt=0)
    photons_per_cm: float = Field(ge=0)
    sigma_theta: float = Field(gt=0)
    background: float = Field(ge=0)
    background_per_track: float = Field(ge=0)
    theta_max: float = Field(gt=0)


class Ecal(_Model):
    stochastic: float = Field(ge=0)
    constant: float = Field(ge=0)
    cluster_radius: float = Field(gt=0)
    position_resolution: float = Field(ge=0)
    hadron_fraction: tuple[float, float]


class Muon(_Model):
    foi_a: float = Field(gt=0)
    foi_b: float = Field(ge=0)


class Beam(_Model):
    sigma_xy: float = Field(ge=0)
    sigma_z: float = Field(ge=0)


class GeometryConfig(_Model):
    beam: Beam
    magnet: Magnet
    materials: dict[str, tuple[float, float, float]]
    rich: Rich
    ecal: Ecal
    muon: Muon
    layer: list[Layer] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> GeometryConfig:
        for layer in self.layer:
            if layer.material not in self.materials:
                raise ValueError(
                    f"layer {layer.name!r}: material {layer.material!r} is not in [materials] "
                    f"({sorted(self.materials)})"
                )
        for kind in ("pixel", "strip", "ecal", "muon"):
            if not any(layer.kind == kind for layer in self.layer):
                raise ValueError(f"the detector needs at least one {kind} layer")
        return self


@dataclass(frozen=True)
class Planes:
    """One entry per plane, sorted by z (arrays of equal length)."""

    name: npt.NDArray[np.str_]
    kind: npt.NDArray[np.int64]
    z: npt.NDArray[np.float64]
    cos: npt.NDArray[np.float64]
    sin: npt.NDArray[np.float64]
    half_x: npt.NDArray[np.float64]
    half_y: npt.NDArray[np.float64]
    hole_r: npt.NDArray[np.float64]
    x0_frac: npt.NDArray[np.float64]
    lambda_frac: npt.NDArray[np.float64]
    #: Z/A, I (GeV), density (g/cm3) of the plane's material and its thickness in g/cm2
    z_over_a: npt.NDArray[np.float64]
    mean_excitation: npt.NDArray[np.float64]
    density: npt.NDArray[np.float64]
    grammage: npt.NDArray[np.float64]
    resolution: npt.NDArray[np.float64]
    efficiency: npt.NDArray[np.float64]
    noise_hits: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.z)

    def of(self, name: str) -> npt.NDArray[np.int64]:
        """Indices of the planes of one layer family (by name)."""
        return np.flatnonzero(self.name == name)


@dataclass(frozen=True)
class Geometry:
    config: GeometryConfig
    planes: Planes
    source: str


def _planes(config: GeometryConfig) -> Planes:
    rows: list[dict[str, Any]] = []
    for layer in config.layer:
        za, ion, density = config.materials[layer.material]
        for k, z in enumerate(layer.z):
            angle = np.radians(layer.stereo_deg[k]) if layer.stereo_deg else 0.0
            rows.append(
                {
                    "name": layer.name,
                    "kind": KINDS.index(layer.kind),
                    "z": z,
                    "cos": np.cos(angle),
                    "sin": np.sin(angle),
                    "half_x": layer.half_x,
                    "half_y": layer.half_y,
                    "hole_r": layer.hole_r,
                    "x0_frac": layer.x0_frac,
                    "lambda_frac": layer.lambda_frac,
                    "z_over_a": za,
                    "mean_excitation": ion,
                    "density": density,
                    "grammage": density * layer.thickness_mm / 10.0,
                    "resolution": layer.resolution,
                    "efficiency": layer.efficiency,
                    "noise_hits": layer.noise_hits,
                }
            )
    rows.sort(key=lambda r: r["z"])
    zs = [r["z"] for r in rows]
    if len(set(zs)) != len(zs):
        raise SimConfigError(f"two planes share the same z; plane z values must differ: {zs}")
    columns: dict[str, Any] = {
        key: np.array([r[key] for r in rows], dtype=None if key == "name" else float)
        for key in rows[0]
    }
    columns["kind"] = columns["kind"].astype(np.int64)
    return Planes(**columns)


def load_geometry(path: str | Path | None = None) -> Geometry:
    """Read a geometry TOML (default: the shipped ``geometry.toml``) and validate it."""
    if path is None:
        text = resources.files("flashlink.sim.detector").joinpath("geometry.toml").read_text()
        source = "flashlink.sim.detector/geometry.toml"
    else:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise SimConfigError(f"cannot read geometry file {path}: {exc}") from exc
        source = str(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SimConfigError(f"geometry file {source} is not valid TOML: {exc}") from exc
    try:
        config = GeometryConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}={err.get('input')!r}: {err['msg']}"
            for err in exc.errors()
        )
        raise SimConfigError(f"invalid geometry in {source}: {problems}") from exc
    return Geometry(config, _planes(config), source)
