"""Ntuples: signal candidates from reconstructed tracks, written as ROOT TTrees and Parquet."""

from __future__ import annotations

__all__ = ["DECAYS", "Decay", "NtupleWriter", "build_candidates", "make_ntuple"]

from flashlink.sim.ntuple.candidates import DECAYS, Decay, build_candidates
from flashlink.sim.ntuple.make import make_ntuple
from flashlink.sim.ntuple.writer import NtupleWriter
