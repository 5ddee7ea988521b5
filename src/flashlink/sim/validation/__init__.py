"""Validation of flash against reference samples: the metric battery and the HTML report."""

from __future__ import annotations

__all__ = ["oversampling_study", "validate_samples"]

from flashlink.sim.validation.oversampling import oversampling_study
from flashlink.sim.validation.report import validate_samples
