"""Every ObjectStore meets one contract: atomic objects, create-only and compare-and-swap writes."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import httpx
import pytest

from flashlink.images.errors import ObjectNotFoundError, StoreError
from flashlink.images.store import DirectoryStore, ObjectStore
from images.conftest import new_bucket_name, s3_store
from servicekit import Service


def _read(store: ObjectStore, key: str) -> bytes:
    where = store.locate(key, 60)
    if isinstance(where, Path):
        return where.read_bytes()
    response = httpx.get(where)
    assert response.status_code == 200, response.text
    return response.content


def test_bytes_round_trip_and_missing_keys(store: ObjectStore) -> None:
    assert store.head("meta/a.json") is None
    with pytest.raises(ObjectNotFoundError, match=r"meta/a\.json"):
        store.get_bytes("meta/a.json")
    written = store.put_bytes("meta/a.json", b'{"a": 1}')
    assert written is not None
    data, info = store.get_bytes("meta/a.json")
    assert data == b'{"a": 1}'
    assert info.size == 8
    assert info.etag == written.etag
    head = store.head("meta/a.json")
    assert head is not None
    assert (head.size, head.etag) == (8, written.etag)


def test_create_only_write_refuses_an_existing_key(store: ObjectStore) -> None:
    assert store.put_bytes("locks/x", b"first", if_none_match=True) is not None
    assert store.put_bytes("locks/x", b"second", if_none_match=True) is None
    assert store.get_bytes("locks/x")[0] == b"first"


def test_compare_and_swap_needs_the_current_version(store: ObjectStore) -> None:
    assert store.put_bytes("locks/y", b"v", if_match="nothing-yet") is None
    assert store.head("locks/y") is None
    first = store.put_bytes("locks/y", b"v1", if_none_match=True)
    assert first is not None
    second = store.put_bytes("locks/y", b"v2", if_match=first.etag)
    assert second is not None
    assert second.etag != first.etag
    # a writer holding the stale version loses, and the object keeps the newer content
    assert store.put_bytes("locks/y", b"v3", if_match=first.etag) is None
    assert store.get_bytes("locks/y")[0] == b"v2"
    assert store.delete("locks/y", if_match=first.etag) is False
    assert store.head("locks/y") is not None
    assert store.delete("locks/y", if_match=second.etag) is True
    assert store.head("locks/y") is None


def test_exactly_one_of_many_racing_creators_wins(store: ObjectStore) -> None:
    winners: list[int] = []
    barrier = threading.Barrier(16)

    def race(i: int) -> None:
        barrier.wait()
        if store.put_bytes("locks/race", str(i).encode(), if_none_match=True) is not None:
            winners.append(i)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert store.get_bytes("locks/race")[0] == str(winners[0]).encode()


def test_files_upload_whole_and_list_under_a_prefix(store: ObjectStore, tmp_path: Path) -> None:
    blob = tmp_path / "image.sif"
    payload = bytes(range(256)) * (3 * 4096 + 7)  # ~3 MiB, every byte value
    blob.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    info = store.put_file("images/a/b/x.sif", blob, sha256=digest)
    assert info.size == len(payload)
    store.put_bytes("images/a/b/x.json", b"{}")
    store.put_bytes("images/a/c/y.json", b"{}")
    store.put_bytes("other/z.json", b"{}")
    assert [o.key for o in store.list("images/a/b/")] == ["images/a/b/x.json", "images/a/b/x.sif"]
    assert len(list(store.list("images/"))) == 3
    assert hashlib.sha256(_read(store, "images/a/b/x.sif")).hexdigest() == digest
    assert store.delete("images/a/b/x.sif") is True
    assert store.head("images/a/b/x.sif") is None


def test_directory_store_refuses_keys_that_escape_it(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "s")
    for key in ("../x", "/etc/passwd", "a//b", ".tmp/cas.lock", ""):
        with pytest.raises(StoreError, match="invalid object key"):
            store.put_bytes(key, b"x")
    # staging files never show up as objects
    store.put_bytes("k", b"v")
    assert [o.key for o in store.list("")] == ["k"]


@pytest.mark.s3
def test_presigned_urls_use_the_public_endpoint_and_are_enforced(s3: Service) -> None:
    public = s3["S3_ENDPOINT"].replace("127.0.0.1", "localhost")
    store = s3_store(s3, new_bucket_name(), public_endpoint_url=public)
    store.put_bytes("images/k.sif", b"sif-bytes")
    url = store.locate("images/k.sif", 60)
    assert isinstance(url, str)
    assert url.startswith(public + "/")
    assert httpx.get(url).content == b"sif-bytes"
    # SigV4 signs the host: the same URL sent to another host name is refused
    assert httpx.get(url.replace("localhost", "127.0.0.1")).status_code == 403
    signature = url.rsplit("X-Amz-Signature=", 1)[1][:64]
    tampered = url.replace(signature, ("0" if signature[0] != "0" else "1") + signature[1:])
    assert httpx.get(tampered).status_code == 403


@pytest.mark.s3
def test_s3_errors_name_the_bucket_and_what_failed(s3: Service) -> None:
    bucket = new_bucket_name()
    s3_store(s3, bucket)  # creates it
    reader = s3_store(
        s3,
        bucket,
        access_key=s3["S3_READONLY_ACCESS_KEY"],
        secret_key=s3["S3_READONLY_SECRET_KEY"],
        create_bucket=False,
    )
    reader.check()
    with pytest.raises(StoreError, match=rf"PUT 'k' failed.*{bucket}.*AccessDenied"):
        reader.put_bytes("k", b"x")
    missing = s3_store(s3, "no-such-bucket-here", create_bucket=False)
    with pytest.raises(StoreError, match="no-such-bucket-here"):
        missing.check()
