"""The records the cache stores next to each SIF and the HTTP bodies: pydantic at the boundary."""

from __future__ import annotations

__all__ = [
    "BuildFailure",
    "BuildPending",
    "ImageMeta",
    "LeaseRecord",
    "TokenRequest",
    "TokenResponse",
]

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageMeta(_Model):
    """``meta.json`` next to a SIF; written after the SIF, so its presence means "complete"."""

    reference: str = Field(description="canonical image reference")
    source: str = Field(description="what was built: docker://..., podman:..., dir:/...")
    source_digest: str | None = Field(description="digest of the source content, if known")
    sha256: str = Field(description="sha256 of the SIF (hex)")
    size: int = Field(description="SIF size in bytes")
    built_at: float = Field(description="when the build finished (seconds since the epoch)")
    build_seconds: float = Field(description="how long the build and upload took")
    builder: str = Field(description="builder name")
    object_key: str = Field(description="key of the SIF in the store")


class LeaseRecord(_Model):
    """``lease.json``: who builds this entry, until when (renewed while the build runs)."""

    owner: str
    acquired_at: float
    expires_at: float


class BuildFailure(_Model):
    """``failed.json``, and the body of a 502 answer."""

    state: Literal["failed"] = "failed"
    reference: str
    message: str
    failed_at: float
    retry_at: float


class BuildPending(_Model):
    """The body of a 202 answer."""

    state: Literal["queued", "building"]
    reference: str
    since: float
    owner: str = Field(description="the service replica doing the build")
    retry_after: int = Field(description="seconds to wait before asking again")


class TokenRequest(_Model):
    ttl_seconds: float | None = Field(
        default=None, gt=0, description="validity of the client token (default: the service's)"
    )
    subject: str = Field(
        default="client", max_length=256, description="who it is for (e.g. namespace/pod)"
    )


class TokenResponse(_Model):
    token: str
    expires_at: float
    scope: str
    subject: str
