"""The reference "detailed" simulation and reconstruction of an LHCb-like forward spectrometer."""

from __future__ import annotations

__all__ = [
    "FieldMap",
    "Geometry",
    "TransportResult",
    "load_geometry",
    "transport",
]

from flashlink.sim.detector.field import FieldMap
from flashlink.sim.detector.geometry import Geometry, load_geometry
from flashlink.sim.detector.transport import TransportResult, transport
