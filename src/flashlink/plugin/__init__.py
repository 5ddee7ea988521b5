"""The interLink plugin HTTP service: state in SQLite, batched status reconciler, logs.

``create_app(config)`` is the FastAPI application, ``serve(config)`` runs it with uvicorn
(``flashlink plugin serve``); :class:`Plugin` is the behaviour behind the endpoints and
:class:`PluginConfig` the configuration (a TOML file, see :mod:`flashlink.plugin.config`).
"""

from __future__ import annotations

__all__ = [
    "AuthConfig",
    "BadRequestError",
    "InvalidPluginConfigError",
    "NotFoundError",
    "Plugin",
    "PluginConfig",
    "PluginError",
    "ServerConfig",
    "SiteConfig",
    "TaintConfig",
    "UnavailableError",
    "create_app",
    "load_config",
    "make_server",
    "parse_plugin_config",
    "serve",
]

from flashlink.plugin.app import create_app
from flashlink.plugin.config import (
    AuthConfig,
    PluginConfig,
    ServerConfig,
    SiteConfig,
    TaintConfig,
    load_config,
    parse_plugin_config,
)
from flashlink.plugin.errors import (
    BadRequestError,
    InvalidPluginConfigError,
    NotFoundError,
    PluginError,
    UnavailableError,
)
from flashlink.plugin.server import make_server, serve
from flashlink.plugin.service import Plugin
