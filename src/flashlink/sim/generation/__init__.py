"""Event generation: Pythia 8 full events and particle guns, columnar events, HepMC3 I/O."""

from __future__ import annotations

__all__ = [
    "CHANNELS",
    "COLUMNS",
    "Channel",
    "EventChunk",
    "GunConfig",
    "LogPSpectrum",
    "PtExpSpectrum",
    "PythiaConfig",
    "PythiaGenerator",
    "concat_chunks",
    "generate",
    "iter_hepmc",
    "parse_generator_config",
    "write_hepmc",
]

from flashlink.sim.generation.channels import CHANNELS, Channel
from flashlink.sim.generation.config import (
    GunConfig,
    LogPSpectrum,
    PtExpSpectrum,
    PythiaConfig,
    parse_generator_config,
)
from flashlink.sim.generation.events import COLUMNS, EventChunk, concat_chunks
from flashlink.sim.generation.hepmc import iter_hepmc, write_hepmc
from flashlink.sim.generation.pythia import PythiaGenerator, generate
