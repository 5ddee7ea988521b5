"""Errors of the image cache service and its client.

::

    FlashlinkError
    └── ImagesError
        ├── InvalidReferenceError   (not a valid image reference; HTTP 400)
        ├── ConfigError             (images.toml / settings are wrong)
        ├── TokenError              (missing, malformed, tampered, expired or wrongly scoped; 401)
        ├── StoreError              (the object store failed: S3 or the directory)
        │   └── ObjectNotFoundError (no such key)
        ├── SourceError             (the image source cannot be resolved: no rule, podman failed)
        ├── BuildError              (the builder failed; the message is its stderr; HTTP 502)
        ├── BusyError               (too many builds queued; HTTP 503)
        └── ClientError             (what :mod:`flashlink.images.client` raises)
            ├── ServiceError        (the service answered an unexpected status)
            ├── ImageBuildFailedError (the service reports a failed build, 502)
            ├── ImageNotReadyError  (still building when the caller's deadline passed)
            └── ChecksumMismatchError (a download does not match the advertised sha256)

Third-party exceptions (botocore, httpx, subprocess) are mapped at the boundary with
``raise ... from exc`` so callers catch one hierarchy.
"""

from __future__ import annotations

__all__ = [
    "BuildError",
    "BusyError",
    "ChecksumMismatchError",
    "ClientError",
    "ConfigError",
    "ImageBuildFailedError",
    "ImageNotReadyError",
    "ImagesError",
    "InvalidReferenceError",
    "ObjectNotFoundError",
    "ServiceError",
    "SourceError",
    "StoreError",
    "TokenError",
]

from flashlink.errors import FlashlinkError


class ImagesError(FlashlinkError):
    """Base class of the image cache's errors."""


class InvalidReferenceError(ImagesError, ValueError):
    """An image reference that does not follow the Docker reference grammar."""

    def __init__(self, reference: str, reason: str) -> None:
        self.reference = reference
        self.reason = reason
        super().__init__(
            f"invalid image reference {reference!r}: {reason} "
            "(expected [registry/]repository[:tag][@sha256:<64 hex>], "
            "e.g. ghcr.io/org/image:1.0 or busybox@sha256:...)"
        )


class ConfigError(ImagesError, ValueError):
    """The service configuration is wrong; the message names the field."""


class TokenError(ImagesError):
    """A token that does not grant the request: missing, malformed, tampered, expired, or scope."""


class StoreError(ImagesError):
    """The object store failed (S3 error, unreadable directory)."""


class ObjectNotFoundError(StoreError, KeyError):
    """The store holds no object under this key."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "object not found"


class SourceError(ImagesError):
    """The source of an image cannot be resolved (no matching rule, podman inspect failed)."""


class BuildError(ImagesError):
    """The builder failed; the message carries the builder's own diagnostics."""


class BusyError(ImagesError):
    """Too many different images are queued for building; ask again later."""


class ClientError(ImagesError):
    """Raised by the Python client of the service."""


class ServiceError(ClientError):
    """The service answered with a status the client did not expect (or could not be reached)."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        self.status_code = status_code
        super().__init__(message)


class ImageBuildFailedError(ClientError):
    """The service reports that building the image failed (HTTP 502)."""


class ImageNotReadyError(ClientError):
    """The image was still being built when the caller's deadline passed."""


class ChecksumMismatchError(ClientError):
    """A downloaded SIF does not match the sha256 the service advertised."""
