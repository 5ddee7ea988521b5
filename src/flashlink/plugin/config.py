"""The plugin configuration: one TOML file, every key documented here (and in the README).

::

    state_dir = "/var/lib/flashlink"      # SQLite store, job directories, backend records
    default_site = "local"                # pods that select no site go here
    reconcile_interval = 2.0              # seconds between two polls of a site

    [server]
    host = "127.0.0.1"
    port = 4000                           # or: socket = "/run/flashlink/plugin.sock"

    [auth]                                # optional bearer tokens (off when none are given)
    tokens_file = "/etc/flashlink/tokens" # one token per line, '#' comments
    tokens_env = "FLASHLINK_PLUGIN_TOKENS"  # or/and comma-separated tokens in this variable

    [[taints]]                            # advertised on the virtual node by the ping
    key = "virtual-node.interlink/no-schedule"
    value = "true"
    effect = "NoSchedule"

    [render]                              # job-script build config of every site
    runtime = "apptainer"                 # (flashlink.jobscript.RenderConfig, same keys)

    [sites.local]
    kind = "local"                        # local | slurm | htcondor
    [sites.local.backend]                 # the kind's own config class (LocalConfig, ...)
    cpus = 4
    memory = "8Gi"

    [sites.cnaf]
    kind = "htcondor"
    jobs_dir = "/shared/flashlink/jobs"   # where job directories go (default STATE_DIR/jobs/SITE)
    reconcile_interval = 10
    [sites.cnaf.render]                   # merged over [render], key by key
    runtime = "apptainer"
    [sites.cnaf.backend]
    ...

A pod goes to the site named by its toleration ``pool.vk.io=<site>`` or its node selector
``pool.vk.io: <site>`` (the key is ``site_key``), else to ``default_site``. With no ``[sites]``
at all the plugin runs one site ``local`` of kind ``local``.
"""

from __future__ import annotations

__all__ = [
    "AuthConfig",
    "PluginConfig",
    "ServerConfig",
    "SiteConfig",
    "TaintConfig",
    "load_config",
    "parse_plugin_config",
]

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flashlink.backends.registry import validate_options
from flashlink.jobscript import JobScriptError, RenderConfig, parse_config
from flashlink.plugin.errors import InvalidPluginConfigError

DEFAULT_PORT = 4000


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    """``[server]``: where the HTTP service listens (TLS belongs to a front proxy)."""

    host: str = Field(
        default="127.0.0.1", description="address to bind; keep loopback unless proxied"
    )
    port: int = Field(
        default=DEFAULT_PORT, ge=0, le=65535, description="TCP port (0: any free port)"
    )
    socket: Path | None = Field(
        default=None,
        description="serve on this unix socket instead of TCP (interLink: unix://PATH)",
    )
    max_body_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=1024,
        description="larger request bodies are refused with 413 (a Pod with its ConfigMaps "
        "and Secrets is at most a few MiB: each object is limited to 1 MiB by Kubernetes)",
    )


class AuthConfig(_Section):
    """``[auth]``: bearer tokens; authentication is on as soon as one token is configured."""

    tokens_file: Path | None = Field(
        default=None, description="file with one accepted token per line ('#' starts a comment)"
    )
    tokens_env: str | None = Field(
        default="FLASHLINK_PLUGIN_TOKENS",
        description="environment variable holding comma-separated accepted tokens",
    )
    open_paths: tuple[str, ...] = Field(
        default=("/healthz",), description="paths served without a token (liveness probes)"
    )

    def tokens(self) -> tuple[str, ...]:
        """Every accepted token; raises when the tokens file is configured but unusable."""
        found: list[str] = []
        if self.tokens_file is not None:
            try:
                text = self.tokens_file.read_text()
            except OSError as exc:
                raise InvalidPluginConfigError(
                    f"auth.tokens_file: cannot read {self.tokens_file}: {exc.strerror}"
                ) from exc
            found += [
                line.strip()
                for line in text.splitlines()
                if line.strip() and not line.lstrip().startswith("#")
            ]
            if not found:
                raise InvalidPluginConfigError(
                    f"auth.tokens_file: {self.tokens_file} holds no token; write one per line "
                    "or remove tokens_file to serve without authentication"
                )
        if self.tokens_env:
            found += [
                t.strip() for t in os.environ.get(self.tokens_env, "").split(",") if t.strip()
            ]
        return tuple(dict.fromkeys(found))


class TaintConfig(_Section):
    """``[[taints]]``: a taint interLink (>= 0.6.2) puts on the virtual node."""

    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"


class SiteConfig(_Section):
    """``[sites.NAME]``: one backend the plugin sends pods to."""

    kind: str = Field(description="local, slurm or htcondor")
    backend: dict[str, Any] = Field(
        default_factory=dict, description="the kind's own settings (LocalConfig, SlurmConfig...)"
    )
    render: dict[str, Any] = Field(
        default_factory=dict, description="job-script build config, merged over [render]"
    )
    jobs_dir: Path | None = Field(
        default=None,
        description="where this site's job directories go; must be visible to the jobs "
        "(a shared filesystem for Slurm); default STATE_DIR/jobs/NAME",
    )
    reconcile_interval: float | None = Field(
        default=None, gt=0, description="seconds between two polls of this site (default: global)"
    )


class PluginConfig(_Section):
    """The whole plugin configuration (see the module docstring for the file layout)."""

    state_dir: Path | None = Field(
        default=None,
        description="SQLite store, job directories and backend records; "
        "default $XDG_STATE_HOME/flashlink/plugin",
    )
    default_site: str | None = Field(
        default=None,
        description="site of pods that select none (default: the only site, or 'local')",
    )
    site_key: str = Field(
        default="pool.vk.io", description="toleration key / node-selector label naming a pod's site"
    )
    reconcile_interval: float = Field(
        default=2.0, gt=0, le=3600, description="seconds between two polls of a site's backend"
    )
    poll_batch: int = Field(
        default=100_000,
        ge=1,
        description="at most this many job ids in one backend poll call (one call per "
        "interval up to this many active jobs)",
    )
    submit_batch: int = Field(
        default=100, ge=1, description="at most this many pods submitted in one backend call"
    )
    create_timeout: float = Field(
        default=90.0,
        gt=0,
        description="seconds /create waits for the backend to accept a pod before it answers "
        "503 (interLink gives up after 120 s)",
    )
    info_interval: float = Field(
        default=30.0, gt=0, description="seconds between two capacity/description calls per site"
    )
    lost_after: int = Field(
        default=3,
        ge=1,
        description="a job missing from this many polls in a row, with no final record, "
        "is reported terminated with reason Lost",
    )
    retention_seconds: float = Field(
        default=86_400.0,
        ge=0,
        description="deleted pods are forgotten (row and job directory removed) this long "
        "after they ended; until then a repeated /create of the same UID is still a no-op",
    )
    log_poll_seconds: float = Field(
        default=0.25,
        gt=0,
        le=10,
        description="how often a followed log (Follow) looks for new output",
    )
    server: ServerConfig = Field(default_factory=ServerConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    taints: tuple[TaintConfig, ...] = ()
    render: dict[str, Any] = Field(
        default_factory=dict, description="job-script build config of every site"
    )
    sites: dict[str, SiteConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _default_site_exists(self) -> PluginConfig:
        names = self.site_names()
        if self.default_site is not None and self.default_site not in names:
            raise ValueError(
                f"default_site {self.default_site!r} is not a configured site; "
                f"sites: {', '.join(names)}"
            )
        for name in self.sites:
            if not name or "/" in name or name.startswith("."):
                raise ValueError(f"sites.{name}: a site name must be non-empty, without '/'")
        return self

    def site_names(self) -> list[str]:
        return sorted(self.sites) if self.sites else ["local"]

    def site_configs(self) -> dict[str, SiteConfig]:
        """The configured sites, or the implicit ``local`` one."""
        return dict(self.sites) if self.sites else {"local": SiteConfig(kind="local")}

    def default(self) -> str | None:
        """The site of pods that select none, or None when they must select one."""
        if self.default_site is not None:
            return self.default_site
        names = self.site_names()
        if len(names) == 1:
            return names[0]
        return "local" if "local" in names else None

    def resolved_state_dir(self) -> Path:
        if self.state_dir is not None:
            return self.state_dir
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(base) / "flashlink" / "plugin"

    def render_config(self, site: str) -> RenderConfig:
        """The job-script config of ``site``: ``[render]`` with ``[sites.NAME.render]`` over it.

        Logs are written with timestamps unless a config says otherwise: they make
        ``Timestamps``, ``SinceSeconds`` and ``SinceTime`` of ``/getLogs`` exact.
        """
        merged = _merge({"timestamp_logs": True}, self.render)
        extra = self.site_configs()[site].render
        merged = _merge(merged, extra)
        try:
            return parse_config(merged)
        except JobScriptError as exc:
            where = f"sites.{site}.render" if extra else "render"
            raise InvalidPluginConfigError(f"{where}: {exc}") from exc


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_plugin_config(data: dict[str, Any] | str) -> PluginConfig:
    """A :class:`PluginConfig` from TOML text or a mapping; errors name every bad key."""
    if isinstance(data, str):
        try:
            data = tomllib.loads(data)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidPluginConfigError(f"the plugin config is not valid TOML: {exc}") from exc
    try:
        config = PluginConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  - {where}: {err['msg']} (got {err.get('input')!r})")
        raise InvalidPluginConfigError(
            "invalid plugin configuration:\n" + "\n".join(lines)
        ) from exc
    for name, site in config.site_configs().items():
        config.render_config(name)  # every site's render config must be valid now
        validate_options(site.kind, name, site.backend)  # and its backend's settings
    return config


def load_config(path: Path | None) -> PluginConfig:
    """The configuration in the TOML file ``path`` (defaults when None)."""
    if path is None:
        return parse_plugin_config({})
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidPluginConfigError(
            f"cannot read the plugin config {path}: {exc.strerror}"
        ) from exc
    try:
        return parse_plugin_config(text)
    except InvalidPluginConfigError as exc:
        raise InvalidPluginConfigError(f"{path}: {exc}") from exc
