"""Errors of the plugin service; :mod:`flashlink.plugin.app` maps each to one HTTP status.

::

    FlashlinkError
    └── PluginError
        ├── InvalidPluginConfigError   the configuration file is wrong (startup error)
        ├── BadRequestError            a request the plugin refuses (400, names the field)
        ├── NotFoundError              no such pod or container (404)
        └── UnavailableError           a site cannot take the request now (503, with the reason)

Errors of the parts below are mapped at the HTTP boundary too: ``kube.InvalidObjectError`` and
``jobscript.JobScriptError`` -> 400, ``backends.SubmitError`` -> 422,
``backends.BackendUnavailableError`` -> 503.
"""

from __future__ import annotations

__all__ = [
    "BadRequestError",
    "InvalidPluginConfigError",
    "NotFoundError",
    "PluginError",
    "UnavailableError",
]

from flashlink.errors import FlashlinkError


class PluginError(FlashlinkError):
    """Base class of the plugin's own errors."""


class InvalidPluginConfigError(PluginError, ValueError):
    """The plugin configuration (TOML file or options) is wrong; the message names the key."""


class BadRequestError(PluginError, ValueError):
    """A request that cannot be served as sent; the message names the offending field."""


class NotFoundError(PluginError, LookupError):
    """The request names a pod or container the plugin does not know."""


class UnavailableError(PluginError):
    """The request cannot be served now (a site is down or busy); retrying later may work."""
