"""Image references parse like Docker's and normalise to one cache key per image."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from flashlink.images.errors import InvalidReferenceError
from flashlink.images.reference import ImageReference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
        ("index.docker.io/library/busybox:latest", "docker.io/library/busybox:latest"),
        ("registry.hub.docker.com/org/img:v1", "docker.io/org/img:v1"),
        ("ghcr.io/org/img:tag", "ghcr.io/org/img:tag"),
        ("localhost/flashlink-test:latest", "localhost/flashlink-test:latest"),
        ("localhost:5000/a/b/c", "localhost:5000/a/b/c:latest"),
        ("10.0.0.1:5000/x__y.z-w:1.0_rc-2", "10.0.0.1:5000/x__y.z-w:1.0_rc-2"),
        (f"img@{DIGEST}", f"docker.io/library/img@{DIGEST}"),
        (f"ghcr.io/o/i:1@{DIGEST}", f"ghcr.io/o/i:1@{DIGEST}"),
    ],
)
def test_references_normalise_like_docker(text: str, canonical: str) -> None:
    ref = ImageReference.parse(text)
    assert str(ref) == canonical
    assert ImageReference.parse(canonical) == ref


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        (" busybox", "whitespace"),
        ("docker://busybox", "transport prefix"),
        ("Busybox", "lowercase"),
        ("org//img", "component ''"),
        ("img:", "tag ''"),
        ("img:-bad", "tag '-bad'"),
        ("img@sha256:abc", "digest 'sha256:abc'"),
        (f"img@{DIGEST}@{DIGEST}", "digest"),
        ("bad_host.io:99x/img", "registry 'bad_host.io:99x'"),
        ("ghcr.io/", "repository name is empty"),
        ("a/" + "b" * 260, "longer than 255"),
    ],
)
def test_invalid_references_say_which_part_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(InvalidReferenceError, match="expected") as err:
        ImageReference.parse(text)
    assert reason in err.value.reason


def test_storage_paths_pin_digests_and_stay_key_safe() -> None:
    assert ImageReference.parse("busybox").storage_path == "docker.io/library/busybox/latest"
    pinned = ImageReference.parse(f"ghcr.io/o/i:1@{DIGEST}")
    assert pinned.storage_path == f"ghcr.io/o/i/@sha256-{'ab' * 32}"


_component = st.from_regex(r"[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,8}){0,2}", fullmatch=True)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)


@given(
    registry=st.sampled_from(["", "ghcr.io/", "localhost:5000/", "quay.io/"]),
    path=st.lists(_component, min_size=1, max_size=3).map("/".join),
    tag=st.none() | _tag,
    digest=st.none() | st.from_regex(r"[a-f0-9]{64}", fullmatch=True),
)
def test_parsing_round_trips_and_keys_are_safe(
    registry: str, path: str, tag: str | None, digest: str | None
) -> None:
    # Docker reads a first component with a '.' as a registry host, so such names need one
    assume(registry or "." not in path.split("/", maxsplit=1)[0])
    text = registry + path + (f":{tag}" if tag else "") + (f"@sha256:{digest}" if digest else "")
    ref = ImageReference.parse(text)
    assert ImageReference.parse(str(ref)) == ref
    assert ref.tag == (tag or (None if digest else "latest"))
    assert all(c.isalnum() or c in "._-/:@" for c in ref.storage_path)
    assert ".." not in ref.storage_path.split("/")
