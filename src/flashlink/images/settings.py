"""Typed settings of the image cache service: ``images.toml`` plus environment overrides.

One model drives the config file, the environment variables and the documentation: every field
has a description, and its environment variable is ``FLASHLINK_IMAGES_<SECTION>_<FIELD>``
(e.g. ``FLASHLINK_IMAGES_AUTH_MASTER_TOKEN``), which wins over the file, so secrets need not be
written in it. ``flashlink images config`` prints a commented sample generated from this module.
"""

from __future__ import annotations

__all__ = ["ImagesSettings", "load_settings", "sample_toml"]

import json
import os
import shlex
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from flashlink.images.errors import ConfigError

ENV_PREFIX = "FLASHLINK_IMAGES_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _command(value: object) -> object:
    return shlex.split(value) if isinstance(value, str) else value


class ServerSettings(_Section):
    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=8080, ge=0, le=65535, description="TCP port (0: any free port)")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        default="info", description="uvicorn and flashlink log level"
    )


class AuthSettings(_Section):
    master_token: SecretStr | None = Field(
        default=None,
        description="secret that mints client tokens (>= 16 characters); prefer the env var",
    )
    master_token_file: Path | None = Field(
        default=None, description="file holding the master token"
    )
    max_token_ttl: float = Field(
        default=7 * 86400, gt=0, description="longest client-token validity, s"
    )
    default_token_ttl: float = Field(
        default=3600, gt=0, description="client-token validity if unasked, s"
    )

    def token(self) -> str:
        if self.master_token is not None:
            return self.master_token.get_secret_value()
        if self.master_token_file is not None:
            try:
                return self.master_token_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"auth.master_token_file: cannot read it: {exc}") from exc
        raise ConfigError(
            "auth.master_token: not set; set FLASHLINK_IMAGES_AUTH_MASTER_TOKEN or "
            "auth.master_token_file (e.g. to the output of `openssl rand -hex 32`)"
        )


class StoreSettings(_Section):
    kind: Literal["directory", "s3"] = Field(default="directory", description="where SIFs are kept")
    path: Path = Field(
        default=Path("/var/lib/flashlink/images"), description="directory store: its root directory"
    )
    bucket: str | None = Field(default=None, description="s3: bucket name")
    prefix: str = Field(default="", description="s3: key prefix inside the bucket")
    endpoint_url: str | None = Field(
        default=None,
        description="s3: endpoint the service uses (None: AWS), e.g. http://minio:9000",
    )
    public_endpoint_url: str | None = Field(
        default=None,
        description="s3: endpoint in presigned URLs, as jobs reach it (default: endpoint_url)",
    )
    region: str = Field(default="us-east-1", description="s3: region used for signing")
    access_key: str | None = Field(
        default=None, description="s3: access key (None: boto3's usual chain)"
    )
    secret_key: SecretStr | None = Field(default=None, description="s3: secret key")
    addressing_style: Literal["auto", "virtual", "path"] = Field(
        default="path", description="s3: path-style URLs work with every S3 server"
    )
    create_bucket: bool = Field(
        default=False, description="s3: create the bucket at start if missing"
    )
    presign_expiry: int = Field(default=600, gt=0, description="validity of presigned URLs, s")


class BuildSettings(_Section):
    workers: int = Field(default=2, ge=1, description="builds run at the same time")
    max_pending: int = Field(
        default=100, ge=1, description="queued+running builds before answering 503"
    )
    workdir: Path = Field(
        default=Path("/var/tmp/flashlink-images"),  # noqa: S108 - a default the operator may change
        description="scratch space for builds",
    )
    apptainer: list[str] = Field(
        default_factory=lambda: ["apptainer"], description="apptainer command (string or list)"
    )
    apptainer_args: list[str] = Field(
        default_factory=list, description="extra arguments to `apptainer build`"
    )
    apptainer_cache_dir: Path | None = Field(
        default=None, description="APPTAINER_CACHEDIR for builds"
    )
    podman: list[str] = Field(
        default_factory=lambda: ["podman"], description="podman command (string or list)"
    )
    timeout: float = Field(default=3600, gt=0, description="longest build, s")
    lease_ttl: float = Field(
        default=60, gt=0, description="build lease validity, renewed every ttl/3, s"
    )
    failure_ttl: float = Field(
        default=300, ge=0, description="how long a failed build is reported before a retry, s"
    )
    digest_ttl: float = Field(
        default=60, ge=0, description="how long a tag's resolved digest is reused, s"
    )
    meta_ttl: float = Field(
        default=30, ge=0, description="how long a replica caches an entry's metadata, s"
    )
    retry_after: int = Field(default=2, ge=1, description="Retry-After of a 202 answer, s")
    allow_registry: bool = Field(
        default=True, description="build references no [[sources]] rule matches from docker://"
    )
    registry_timeout: float = Field(default=5, gt=0, description="tag -> digest lookup timeout, s")
    insecure_registries: list[str] = Field(
        default_factory=list, description="registries reached over plain http"
    )

    _split = field_validator("apptainer", "podman", "apptainer_args", mode="before")(_command)


class SourceRuleSettings(_Section):
    match: str = Field(description="fnmatch pattern on the canonical reference")
    source: str = Field(
        description="podman:{reference}, oci-archive:/x.tar, dir:/x, docker://{reference}"
    )


class EvictionSettings(_Section):
    max_age: float | None = Field(
        default=None, gt=0, description="evict entries built longer ago, s"
    )
    max_total_bytes: int | None = Field(
        default=None, gt=0, description="evict oldest beyond this size"
    )
    interval: float = Field(default=3600, gt=0, description="how often eviction runs, s")


class ImagesSettings(_Section):
    server: ServerSettings = Field(default_factory=ServerSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    build: BuildSettings = Field(default_factory=BuildSettings)
    sources: list[SourceRuleSettings] = Field(
        default_factory=list, description="local sources, first match wins"
    )
    eviction: EvictionSettings = Field(default_factory=EvictionSettings)


_SECTIONS: dict[str, type[_Section]] = {
    "server": ServerSettings,
    "auth": AuthSettings,
    "store": StoreSettings,
    "build": BuildSettings,
    "eviction": EvictionSettings,
}


def env_name(section: str, name: str) -> str:
    return f"{ENV_PREFIX}{section}_{name}".upper()


def _env_value(raw: str) -> Any:
    # lists may be given as JSON ('["a", "b"]'); everything else as the string pydantic parses
    if raw.startswith("["):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> ImagesSettings:
    """Read ``path`` (TOML, optional) and apply ``FLASHLINK_IMAGES_*`` overrides from ``env``."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    for section, model in _SECTIONS.items():
        for name in model.model_fields:
            value = env.get(env_name(section, name))
            if value is not None:
                data.setdefault(section, {})[name] = _env_value(value)
    try:
        settings = ImagesSettings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {e.get('input')!r})"
            for e in exc.errors()
        )
        raise ConfigError(f"{path or 'settings'}: {problems}") from None
    if settings.store.kind == "s3" and not settings.store.bucket:
        raise ConfigError("store.bucket: required when store.kind = 's3'")
    return settings


def sample_toml() -> str:
    """A commented ``images.toml`` with every setting, its default and its env variable."""
    lines = ["# flashlink images serve --config images.toml", ""]
    for section, model in _SECTIONS.items():
        lines.append(f"[{section}]")
        for name, info in model.model_fields.items():
            default = info.get_default(call_default_factory=True)
            lines.append(f"# {info.description}  (env {env_name(section, name)})")
            if default is None or isinstance(default, SecretStr):
                lines.append(f"# {name} =")
            else:
                value = str(default) if isinstance(default, Path) else default
                lines.append(f"{name} = {json.dumps(value)}")
        lines.append("")
    lines += [
        "# Local sources (tests, air-gapped sites): first matching rule wins.",
        "# [[sources]]",
        '# match = "localhost/*"',
        '# source = "podman:{reference}"',
        "",
    ]
    return "\n".join(lines)
