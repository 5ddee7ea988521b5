"""Serving the plugin with uvicorn: TCP on loopback by default, or a unix socket.

uvloop and httptools are uvicorn's fast event loop and HTTP parser; ``benchmarks/plugin_status.py``
measures what they give on /status. TLS is left to a front proxy (or to interLink's own
socket setup): the plugin binds loopback or a unix socket unless told otherwise.
"""

from __future__ import annotations

__all__ = ["make_server", "serve"]

import logging

import uvicorn

from flashlink.plugin.app import create_app
from flashlink.plugin.config import PluginConfig
from flashlink.plugin.service import Plugin

_log = logging.getLogger(__name__)


def make_server(config: PluginConfig, log_level: str = "warning") -> uvicorn.Server:
    """A uvicorn server for the plugin of ``config`` (not started)."""
    plugin = Plugin(config)
    app = create_app(plugin=plugin)
    server_config = config.server
    if server_config.socket is not None:
        server_config.socket.parent.mkdir(parents=True, exist_ok=True)
        server_config.socket.unlink(missing_ok=True)
    uv = uvicorn.Config(
        app,
        host=server_config.host,
        port=server_config.port,
        uds=str(server_config.socket) if server_config.socket is not None else None,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=5,
        # interLink keeps connections alive between its ~5 s status polls
        timeout_keep_alive=75,
    )
    return uvicorn.Server(uv)


def serve(config: PluginConfig, log_level: str = "warning") -> None:
    """Serve until SIGINT/SIGTERM; running jobs are left running for the next start."""
    make_server(config, log_level).run()
