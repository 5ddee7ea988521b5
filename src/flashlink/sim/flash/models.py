"""The flash models as small configured constructors (Lamarr's decomposition, one per step).

A :class:`ModelSpec` says what a model sees (``inputs``), what it produces (``outputs``, or
``classes`` for a classifier), which particles it is trained and applied on (``rows``), and
its hyper-parameters. The chain (:mod:`flashlink.sim.flash.chain`) runs them in this order,
each later model conditioned on what the earlier ones produced:

1. :func:`acceptance` - P(in acceptance) for every tracked particle;
2. :func:`track_type` - softmax over {not reconstructed, long, upstream, downstream} inside the
   acceptance (the category is then sampled, as Lamarr's ``random_category``);
3. :func:`resolution` - residuals of the track state at the closest approach to the beam line
   (dx, dy, dz, dtx, dty, relative d(q/p)), chi2/ndof and the hit counts (integers,
   dequantised; ndof = 2 VELO + UT + T hits - 5 follows from them exactly);
4. :func:`covariance` - log variances and correlations of the 5x5 state covariance, given the
   resolution model's chi2/ndof and hit counts (the chain conditions on earlier outputs);
5. :func:`is_muon` - P(isMuon) given the species and the track;
6. :func:`pid` per species - RICH DLLs, photon count, muon stations, calorimeter energy given
   kinematics, track type, isMuon and the reconstructed track multiplicity of the event.

Primary-vertex smearing is a parametric model fitted in :mod:`flashlink.sim.flash.pv`.
"""

from __future__ import annotations

__all__ = [
    "CHAIN",
    "COV_PAIRS",
    "RESOLUTION_OUTPUTS",
    "ModelSpec",
    "acceptance",
    "covariance",
    "default_specs",
    "is_muon",
    "pid",
    "resolution",
    "track_type",
]

from dataclasses import dataclass, field, replace
from typing import Literal

from flashlink.sim.flash.features import BASE_FEATURES, SPECIES

TYPE_FLAGS = ("is_long", "is_upstream", "is_downstream")
RESOLUTION_OUTPUTS = ("dx", "dy", "dz", "dtx", "dty", "dqop", "chi2ndof", "n_velo", "n_ut", "n_t")
COV_PAIRS = [(i, j) for i in range(5) for j in range(i + 1, 5)]
COVARIANCE_OUTPUTS = (
    *(f"log_var_{i}" for i in range(5)),
    *(f"rho_{i}{j}" for i, j in COV_PAIRS),
)
PID_OUTPUTS = (
    "dll_e",
    "dll_mu",
    "dll_k",
    "dll_p",
    "rich_photons",
    "n_muon_stations",
    "calo_e",
)
INTEGER_OUTPUTS = frozenset({"n_velo", "n_ut", "n_t", "rich_photons", "n_muon_stations"})

Kind = Literal["classifier", "generator"]
Family = Literal["mlp", "flow"]


@dataclass(frozen=True)
class ModelSpec:
    """What one flash model is: its inputs, outputs, rows and hyper-parameters."""

    name: str
    kind: Kind
    inputs: tuple[str, ...]
    #: generated columns (generator) or class labels (classifier)
    outputs: tuple[str, ...]
    #: which rows of the training table: "all", "accepted", "reconstructed", or "species:<s>"
    rows: str
    hidden: tuple[int, ...] = (64, 64)
    #: generator families to train; the validation picks one (classifiers are always "mlp")
    families: tuple[Family, ...] = ("mlp",)
    #: noise dimensions of an MLP generator
    noise: int = 8
    #: flow: coupling transforms, spline bins, conditioner hidden sizes
    transforms: int = 3
    bins: int = 8
    flow_hidden: tuple[int, ...] = (64, 64)
    epochs: int = 20
    #: flows cost ~10x more per epoch than an MLP generator on CPU (measured on this machine)
    flow_epochs: int = 8
    #: at least this many optimiser steps, whatever the epochs (small training sets such as
    #: the electrons' ~6k rows got only ~60 steps from 20 epochs and stayed undertrained)
    min_steps: int = 1500
    #: 250 steps left the flows undertrained (validation NLL still falling steeply; the
    #: resolution flow's 8.81 nats at 250 steps were 6.5 at 1200). One step of the largest
    #: flow (covariance, batch 2048) costs ~0.13 s on 2 idle cores: 2400 steps for every flow
    #: keep the whole set's training near 20 minutes
    flow_min_steps: int = 2400
    batch_size: int = 2048
    lr: float = 3e-3
    #: class weights are never used: a classifier must give calibrated probabilities
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def integer(self) -> list[bool]:
        return [name in INTEGER_OUTPUTS for name in self.outputs]

    def with_options(self, **changes: object) -> ModelSpec:
        """A copy with some hyper-parameters changed (e.g. smaller for tests)."""
        return replace(self, **changes)  # type: ignore[arg-type]


def acceptance() -> ModelSpec:
    """Binary classifier: is a tracked particle inside the tracking acceptance?"""
    return ModelSpec(
        "acceptance", "classifier", BASE_FEATURES, ("out", "in"), "all", hidden=(32, 32)
    )


def track_type() -> ModelSpec:
    """Four-class classifier of the track type inside the acceptance (Lamarr's efficiency)."""
    return ModelSpec(
        "track_type",
        "classifier",
        BASE_FEATURES,
        ("none", "long", "upstream", "downstream"),
        "accepted",
        hidden=(32, 32),
    )


def resolution() -> ModelSpec:
    """Generator of the state residuals, chi2/ndof and hit counts of reconstructed tracks."""
    return ModelSpec(
        "resolution",
        "generator",
        (*BASE_FEATURES, *TYPE_FLAGS),
        RESOLUTION_OUTPUTS,
        "reconstructed",
        families=("mlp", "flow"),
        noise=10,
    )


def covariance() -> ModelSpec:
    """Generator of the state covariance, conditioned on the resolution model's outputs."""
    return ModelSpec(
        "covariance",
        "generator",
        (*BASE_FEATURES, *TYPE_FLAGS, "chi2ndof", "n_velo", "n_ut", "n_t"),
        COVARIANCE_OUTPUTS,
        "reconstructed",
        families=("mlp", "flow"),
        noise=4,
        # 15 outputs: this flow costs 3.4 us per tracked particle, a third of the chain; 2 x
        # 32x32 conditioners cost 2.0 us but raised its validation AUC from 0.76 to 0.86
        # (measured, docs/flash.md): fidelity first
    )


def is_muon() -> ModelSpec:
    """Binary classifier: LHCb isMuon of a reconstructed track."""
    return ModelSpec(
        "is_muon",
        "classifier",
        (*BASE_FEATURES, *TYPE_FLAGS, "log_n_tracks"),
        ("no", "yes"),
        "reconstructed",
        hidden=(32, 32),
    )


def pid(species: str) -> ModelSpec:
    """Generator of the PID variables of reconstructed tracks of one true species."""
    if species not in SPECIES:
        raise ValueError(f"species {species!r} is unknown; valid species: {sorted(SPECIES)}")
    return ModelSpec(
        f"pid_{species}",
        "generator",
        (*BASE_FEATURES, *TYPE_FLAGS, "is_muon", "log_n_tracks"),
        PID_OUTPUTS,
        f"species:{species}",
        families=("mlp", "flow"),
        noise=8,
        batch_size=512,
    )


#: the order in which the chain applies the models
CHAIN: tuple[str, ...] = (
    "acceptance",
    "track_type",
    "resolution",
    "covariance",
    "is_muon",
    *(f"pid_{s}" for s in SPECIES),
)


def default_specs() -> dict[str, ModelSpec]:
    """Every model of the chain with its default hyper-parameters."""
    specs = [acceptance(), track_type(), resolution(), covariance(), is_muon()]
    specs += [pid(s) for s in SPECIES]
    return {s.name: s for s in specs}
