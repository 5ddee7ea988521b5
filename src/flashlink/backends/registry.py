"""Site kinds: ``kind = "..."`` in a site's configuration -> backend class and config class.

Imports are lazy: a plugin that only runs local jobs never imports the HTCondor bindings. Each
backend class is built as ``Cls(name, config)`` where ``config`` is its pydantic config class,
validated from the site's ``[sites.NAME.backend]`` table. When that class has a ``state_dir``
field and the table leaves it out, :func:`create_backend` fills in the directory the caller
gives (the plugin passes ``STATE_DIR/sites/NAME``), so every backend that keeps files of its own
has a place that survives restarts.
"""

from __future__ import annotations

__all__ = ["KINDS", "backend_classes", "create_backend", "kinds", "validate_options"]

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from flashlink.backends.base import Backend
from flashlink.backends.errors import InvalidSiteConfigError

KINDS: Mapping[str, tuple[str, str, str]] = {
    "htcondor": ("flashlink.backends.htcondor", "HTCondorBackend", "HTCondorConfig"),
    "local": ("flashlink.backends.local", "LocalBackend", "LocalConfig"),
    "slurm": ("flashlink.backends.slurm", "SlurmBackend", "SlurmConfig"),
}
"""kind -> (module, backend class, config class)."""


def kinds() -> tuple[str, ...]:
    """The site kinds this flashlink knows."""
    return tuple(sorted(KINDS))


def backend_classes(kind: str) -> tuple[type[Any], type[BaseModel]]:
    """(backend class, config class) of ``kind``, imported now."""
    if kind not in KINDS:
        raise InvalidSiteConfigError(
            f"unknown site kind {kind!r}; valid kinds: {', '.join(kinds())}"
        )
    module_name, backend_name, config_name = KINDS[kind]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidSiteConfigError(
            f"site kind {kind!r} is not usable here: importing {module_name} failed ({exc}); "
            "install what it needs (pip install flashlink[...]) or use another kind"
        ) from exc
    try:
        backend_cls, config_cls = getattr(module, backend_name), getattr(module, config_name)
    except AttributeError as exc:
        raise InvalidSiteConfigError(
            f"site kind {kind!r}: {module_name} does not define {exc.name}"
        ) from exc
    return backend_cls, config_cls


def _problems(exc: ValidationError, where: str) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        lines.append(f"  - {where}.{loc}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def validate_options(kind: str, name: str, options: Mapping[str, Any] | None) -> BaseModel:
    """The site's validated config object (InvalidSiteConfigError names each bad key)."""
    _, config_cls = backend_classes(kind)
    try:
        return config_cls.model_validate(dict(options or {}))
    except ValidationError as exc:
        fields = ", ".join(sorted(config_cls.model_fields))
        raise InvalidSiteConfigError(
            f"invalid configuration of site {name!r} (kind {kind!r}):\n"
            f"{_problems(exc, f'sites.{name}.backend')}\n"
            f"  valid keys of a {kind} site: {fields}"
        ) from exc


def create_backend(
    kind: str,
    name: str,
    options: Mapping[str, Any] | None = None,
    state_dir: Path | None = None,
) -> Backend:
    """Build the backend of site ``name`` from its (unvalidated) ``options``."""
    backend_cls, config_cls = backend_classes(kind)
    data = dict(options or {})
    if state_dir is not None and "state_dir" in config_cls.model_fields:
        data.setdefault("state_dir", state_dir)
    config = validate_options(kind, name, data)
    backend: Backend = backend_cls(name, config)
    return backend
