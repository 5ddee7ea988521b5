"""Tag -> digest through the OCI distribution API, so a moved tag gets a new cache entry.

``HEAD /v2/<repository>/manifests/<tag>`` answers the manifest digest in
``Docker-Content-Digest`` (OCI distribution spec, "Checking if content exists"). Registries that
require a token answer 401 with ``WWW-Authenticate: Bearer realm=...,service=...,scope=...``;
an anonymous ``GET realm?service=&scope=`` returns one (Docker Hub, GHCR and Quay all do this
for public images). A HEAD does not count against Docker Hub's pull rate limit.

Any failure (no network, 404, private image) gives None: the cache then keys the image by its
tag alone, which is what a site without registry access needs. Not exercised by the tests: no
registry is reachable from the test machines.
"""

from __future__ import annotations

__all__ = ["RegistryDigestResolver"]

import logging
import re

import httpx

from flashlink.images.reference import DOCKER_HUB, ImageReference

_log = logging.getLogger(__name__)
_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class RegistryDigestResolver:
    """Callable: ``resolver(ref) -> "sha256:..." | None``."""

    def __init__(self, *, timeout: float = 5.0, insecure_registries: tuple[str, ...] = ()) -> None:
        self.timeout = timeout
        self.insecure = frozenset(insecure_registries)

    def _base(self, ref: ImageReference) -> str:
        host = "registry-1.docker.io" if ref.registry == DOCKER_HUB else ref.registry
        scheme = "http" if ref.registry in self.insecure else "https"
        return f"{scheme}://{host}"

    def __call__(self, ref: ImageReference) -> str | None:
        if ref.digest is not None:
            return ref.digest
        url = f"{self._base(ref)}/v2/{ref.repository}/manifests/{ref.tag}"
        try:
            with httpx.Client(timeout=self.timeout, follow_redirects=True) as client:
                response = client.head(url, headers={"Accept": _ACCEPT})
                if response.status_code == 401:
                    token = self._anonymous_token(client, response)
                    if token is None:
                        return None
                    response = client.head(
                        url, headers={"Accept": _ACCEPT, "Authorization": f"Bearer {token}"}
                    )
        except httpx.HTTPError as exc:
            _log.info("registry digest of %s unavailable: %s", ref, exc)
            return None
        digest = response.headers.get("Docker-Content-Digest")
        if response.status_code != 200 or not digest:
            _log.info("registry digest of %s unavailable: HTTP %s", ref, response.status_code)
            return None
        return str(digest)

    def _anonymous_token(self, client: httpx.Client, response: httpx.Response) -> str | None:
        challenge = response.headers.get("WWW-Authenticate", "")
        if not challenge.lower().startswith("bearer "):
            return None
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", None)
        if realm is None:
            return None
        answer = client.get(realm, params=params)
        if answer.status_code != 200:
            return None
        body = answer.json()
        token = body.get("token") or body.get("access_token")
        return str(token) if token else None
