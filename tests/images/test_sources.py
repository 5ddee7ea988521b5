"""Sources: rules, templates and the digests that make a moved tag a new cache entry."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from flashlink.images.errors import ConfigError, SourceError
from flashlink.images.reference import ImageReference
from flashlink.images.registry import RegistryDigestResolver
from flashlink.images.sources import Source, SourceResolver, SourceRule, tree_fingerprint
from servicekit import Service

REF = ImageReference.parse("site.local/analysis:2.1")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ftp://x", "is not one of docker://REF"),
        ("dir:relative/path", "dir needs an absolute path"),
        ("oci-archive:", "is not one of"),
    ],
)
def test_bad_sources_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Source.parse(text)


def test_rules_match_in_order_and_fill_templates() -> None:
    resolver = SourceResolver(
        [
            SourceRule("site.local/analysis:*", "oci-archive:/images/{repository}-{tag}.tar"),
            SourceRule("site.local/*", "dir:/images/{name}"),
            SourceRule("localhost/*", "podman:{reference}"),
        ],
        allow_registry=True,
    )
    assert resolver.source_for(REF).uri == "oci-archive:/images/analysis-2.1.tar"
    other = ImageReference.parse("site.local/base:1")
    assert resolver.source_for(other).uri == "dir:/images/site.local/base"
    local = ImageReference.parse("localhost/img")
    assert resolver.source_for(local).uri == "podman:localhost/img:latest"
    hub = ImageReference.parse("busybox")
    assert resolver.source_for(hub).uri == "docker://docker.io/library/busybox:latest"
    with pytest.raises(ConfigError, match=r"placeholders are \{reference\}"):
        SourceRule("*", "dir:/x/{nope}")
    closed = SourceResolver([SourceRule("site.local/*", "dir:/x")], allow_registry=False)
    with pytest.raises(SourceError, match=r"matches no \[\[sources\]\] rule \(site\.local/\*\)"):
        closed.source_for(hub)


def test_tree_fingerprints_change_with_any_write(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "a").write_text("1")
    os.symlink("etc/a", root / "link")
    first = tree_fingerprint(root)
    assert tree_fingerprint(root) == first
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, symlinks=True, copy_function=shutil.copy2)
    os.utime(
        copy / "etc", ns=(os.stat(root / "etc").st_atime_ns, os.stat(root / "etc").st_mtime_ns)
    )
    assert tree_fingerprint(copy) == first  # same names, sizes, modes and times
    (root / "etc" / "a").write_text("2")
    assert tree_fingerprint(root) != first


def test_digests_are_cached_for_their_ttl(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    root.mkdir()
    source = Source("dir", str(root))
    resolver = SourceResolver(digest_ttl=0.3)
    before = resolver.digest(REF, source)
    (root / "new").write_text("x")
    assert resolver.digest(REF, source) == before  # cached
    time.sleep(0.35)
    assert resolver.digest(REF, source) != before
    assert resolver.digest(REF, Source("dir", str(tmp_path / "missing"))) is None


def test_an_unreachable_registry_leaves_the_tag_unresolved() -> None:
    resolver = RegistryDigestResolver(timeout=2, insecure_registries=("127.0.0.1:9",))
    t0 = time.monotonic()
    assert resolver(ImageReference.parse("127.0.0.1:9/org/img:1")) is None
    assert time.monotonic() - t0 < 2
    pinned = ImageReference.parse("127.0.0.1:9/org/img@sha256:" + "c" * 64)
    assert resolver(pinned) == "sha256:" + "c" * 64
    sources = SourceResolver(registry_digest=resolver)
    docker = sources.source_for(pinned)
    assert sources.digest(pinned, docker) == "sha256:" + "c" * 64


@pytest.mark.podman
def test_podman_digests_are_image_ids(podman: Service) -> None:
    resolver = SourceResolver(podman=[podman["PODMAN"]])
    image = ImageReference.parse(podman["TEST_IMAGE_PODMAN"])
    digest = resolver.digest(image, Source("podman", str(image)))
    assert digest is not None
    assert digest.startswith("sha256:")
    assert len(digest) == len("sha256:") + 64
    missing = ImageReference.parse("localhost/no-such-image:0")
    assert resolver.digest(missing, Source("podman", str(missing))) is None
