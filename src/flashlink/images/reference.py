"""Container image references, parsed and normalised the way Docker does.

The grammar is distribution/reference's (``reference.go`` in github.com/distribution/reference)::

    reference       := name [ ":" tag ] [ "@" digest ]
    name            := [domain "/"] path-component ["/" path-component]*
    domain          := host [":" port]        (the first component, when it has a "." or ":"
                                               or is "localhost"; else Docker Hub)
    path-component  := [a-z0-9]+ ((\\.|_|__|-+) [a-z0-9]+)*
    tag             := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest          := "sha256:" 64 lowercase hex | "sha512:" 128 lowercase hex

Normalisation (``docker.io/library/`` for bare Docker Hub names, ``:latest`` when there is
neither tag nor digest) makes ``busybox``, ``docker.io/busybox`` and
``index.docker.io/library/busybox:latest`` one cache entry.
"""

from __future__ import annotations

__all__ = ["DOCKER_HUB", "ImageReference"]

import re
from dataclasses import dataclass

from flashlink.images.errors import InvalidReferenceError

DOCKER_HUB = "docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io",
                          "registry.hub.docker.com"})  # fmt: skip
_MAX_NAME = 255  # distribution/reference's NameTotalLengthMax

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]{{1,5}})?"
)
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")


@dataclass(frozen=True)
class ImageReference:
    """A parsed, normalised reference; build one with :meth:`parse`."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, text: str) -> ImageReference:
        """Parse ``text`` or raise :class:`InvalidReferenceError` saying which part is wrong."""
        if not text or text != text.strip():
            raise InvalidReferenceError(text, "empty or surrounded by whitespace")
        if "://" in text:
            raise InvalidReferenceError(
                text, "give the reference without a transport prefix such as docker://"
            )
        rest, at, digest = text.partition("@")
        if at and not _DIGEST.fullmatch(digest):
            raise InvalidReferenceError(
                text, f"digest {digest!r} is not sha256:<64 lowercase hex> or sha512:<128 hex>"
            )
        rest, tag = _split_tag(text, rest)
        registry, path = _split_registry(text, rest)
        registry = DOCKER_HUB if registry.lower() in _HUB_ALIASES else registry
        if not path:
            raise InvalidReferenceError(text, "the repository name is empty")
        for component in path.split("/"):
            if not _PATH_COMPONENT.fullmatch(component):
                raise InvalidReferenceError(
                    text,
                    f"repository component {component!r} must be lowercase letters and digits "
                    "separated by '.', '_', '__' or '-'",
                )
        if registry == DOCKER_HUB and "/" not in path:
            path = "library/" + path
        if len(registry) + 1 + len(path) > _MAX_NAME:
            raise InvalidReferenceError(text, f"the name is longer than {_MAX_NAME} characters")
        if tag is None and not at:
            tag = "latest"
        return cls(registry=registry, repository=path, tag=tag, digest=digest or None)

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        """The canonical spelling: ``docker.io/library/busybox:latest``."""
        out = self.name
        if self.tag is not None:
            out += ":" + self.tag
        if self.digest is not None:
            out += "@" + self.digest
        return out

    @property
    def storage_path(self) -> str:
        """A path for object keys; a digest pins the content, so it wins over the tag.

        Safe in S3 keys and file names: components are ``[a-z0-9._-]``, a registry may add a
        ``:port``; a digest is spelled ``@sha256-<hex>`` (no ':' in the last component).
        """
        if self.digest is not None:
            return f"{self.name}/@{self.digest.replace(':', '-')}"
        return f"{self.name}/{self.tag}"


def _split_tag(text: str, rest: str) -> tuple[str, str | None]:
    """A ':' after the last '/' starts the tag; one before it belongs to a registry port."""
    colon = rest.rfind(":")
    if colon <= rest.rfind("/"):
        return rest, None
    tag = rest[colon + 1 :]
    if not _TAG.fullmatch(tag):
        raise InvalidReferenceError(
            text, f"tag {tag!r} must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
        )
    return rest[:colon], tag


def _split_registry(text: str, rest: str) -> tuple[str, str]:
    """Docker's rule: the first component names a registry if it looks like a host."""
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        if not _DOMAIN.fullmatch(first):
            raise InvalidReferenceError(text, f"registry {first!r} is not a host[:port]")
        return first, remainder
    return DOCKER_HUB, rest
