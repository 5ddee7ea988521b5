"""Errors of the simulation payload (:mod:`flashlink.sim`).

::

    FlashlinkError
    └── SimError
        ├── SimConfigError        a configuration field has a bad value (names field, value, valid)
        ├── GenerationError       Pythia refused a setting or failed to produce an event
        ├── EventFormatError      an event file (Parquet, HepMC3) is missing columns or is corrupt
        ├── StorageError          a local path or URL cannot be read or written
        └── MissingDependencyError  an optional package (pythia8mc, pyhepmc, s3fs) is not installed

Third-party exceptions are mapped here with ``raise ... from exc`` at the module that calls them.
"""

from __future__ import annotations

__all__ = [
    "EventFormatError",
    "GenerationError",
    "MissingDependencyError",
    "SimConfigError",
    "SimError",
    "StorageError",
]

from flashlink.errors import FlashlinkError


class SimError(FlashlinkError):
    """Base of every error raised on purpose by :mod:`flashlink.sim`."""


class SimConfigError(SimError, ValueError):
    """A configuration field (generator, geometry, reconstruction) has an invalid value."""


class GenerationError(SimError):
    """Pythia rejected a setting or could not generate an event."""


class EventFormatError(SimError):
    """An event or track file does not have the expected columns or structure."""


class StorageError(SimError, OSError):
    """A file or URL could not be opened, read or written."""


class MissingDependencyError(SimError, ImportError):
    """An optional dependency is missing; the message names the package and how to install it."""
