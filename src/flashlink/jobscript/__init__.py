"""Job scripts: a pure translation of a Pod into one self-contained bash script.

``render(request, config) -> JobScript`` (see :mod:`.render`) is the whole API; the
configuration is :class:`RenderConfig` (a TOML file via :func:`parse_config`), and
:mod:`.state` reads back the job directory that a running script maintains.
"""

from __future__ import annotations

__all__ = [
    "ApptainerConfig",
    "ImagesConfig",
    "InvalidConfigError",
    "InvalidPodError",
    "JobScript",
    "JobScriptError",
    "MissingObjectError",
    "PodRecord",
    "PodmanConfig",
    "RenderConfig",
    "Resources",
    "UnsupportedError",
    "VolumesConfig",
    "container_log",
    "container_state",
    "parse_config",
    "parse_pod_record",
    "parse_state",
    "render",
]

from flashlink.jobscript.config import (
    ApptainerConfig,
    ImagesConfig,
    PodmanConfig,
    RenderConfig,
    VolumesConfig,
    parse_config,
)
from flashlink.jobscript.errors import (
    InvalidConfigError,
    InvalidPodError,
    JobScriptError,
    MissingObjectError,
    UnsupportedError,
)
from flashlink.jobscript.render import JobScript, render
from flashlink.jobscript.resources import Resources
from flashlink.jobscript.state import (
    PodRecord,
    container_log,
    container_state,
    parse_pod_record,
    parse_state,
)
