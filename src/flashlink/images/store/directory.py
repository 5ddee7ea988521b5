"""``DirectoryStore``: the object store as a plain directory (the embedded default).

Atomicity comes from the file system: every write goes to a temporary file in ``.tmp/`` on the
same file system and is then renamed into place (``rename(2)`` replaces atomically) or hard-linked
(``link(2)`` fails with EEXIST, which makes create-only writes atomic). Compare-and-swap takes an
``flock`` on ``.tmp/cas.lock`` for the few microseconds of the compare and the rename, so several
service processes on one host (or on a file system with working ``flock``) may share the
directory. The etag is ``inode-mtime_ns-size``: each write is a new file, so it changes with every
write.
"""

from __future__ import annotations

__all__ = ["DirectoryStore"]

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from flashlink.images.errors import ObjectNotFoundError, StoreError
from flashlink.images.store._base import Location, ObjectInfo

_TMP = ".tmp"


def _etag(st: os.stat_result) -> str:
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


class DirectoryStore:
    """Objects are files under ``root``; keys are relative paths."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        try:
            (self.root / _TMP).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the image store directory {self.root}: {exc}") from exc

    def describe(self) -> str:
        return f"directory {self.root}"

    def check(self) -> None:
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StoreError(f"the image store directory {self.root} is not writable")

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..", _TMP) for p in parts):
            raise StoreError(f"invalid object key {key!r}: empty, absolute, or with ./../.tmp")
        return self.root.joinpath(*parts)

    def _info(self, key: str, st: os.stat_result) -> ObjectInfo:
        return ObjectInfo(key=key, size=st.st_size, etag=_etag(st), modified=st.st_mtime)

    def head(self, key: str) -> ObjectInfo | None:
        try:
            return self._info(key, self._path(key).stat())
        except FileNotFoundError:
            return None

    def get_bytes(self, key: str) -> tuple[bytes, ObjectInfo]:
        try:
            with self._path(key).open("rb") as fh:
                st = os.fstat(fh.fileno())
                return fh.read(), self._info(key, st)
        except FileNotFoundError:
            raise ObjectNotFoundError(f"no object {key!r} in {self.describe()}") from None

    def _staged(self, data: bytes) -> Path:
        fd, name = tempfile.mkstemp(dir=self.root / _TMP, prefix="obj-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return Path(name)

    @contextlib.contextmanager
    def _cas_lock(self) -> Iterator[None]:
        with (self.root / _TMP / "cas.lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def put_bytes(
        self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> ObjectInfo | None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = self._staged(data)
        try:
            if if_none_match:
                try:
                    os.link(staged, target)
                except FileExistsError:
                    return None
                return self._info(key, target.stat())
            if if_match is not None:
                with self._cas_lock():
                    current = self.head(key)
                    if current is None or current.etag != if_match:
                        return None
                    os.replace(staged, target)
                    return self._info(key, target.stat())
            os.replace(staged, target)
            return self._info(key, target.stat())
        finally:
            staged.unlink(missing_ok=True)

    def put_file(self, key: str, path: Path, *, sha256: str) -> ObjectInfo:
        del sha256  # a local copy cannot be corrupted in transit; the cache hashed the source
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.root / _TMP, prefix="file-")
        staged = Path(name)
        try:
            with os.fdopen(fd, "wb") as out, Path(path).open("rb") as src:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(staged, target)
        except OSError as exc:
            raise StoreError(f"cannot store {path} as {key!r} in {self.root}: {exc}") from exc
        finally:
            staged.unlink(missing_ok=True)
        return self._info(key, target.stat())

    def delete(self, key: str, *, if_match: str | None = None) -> bool:
        path = self._path(key)
        if if_match is None:
            path.unlink(missing_ok=True)
            return True
        with self._cas_lock():
            current = self.head(key)
            if current is None or current.etag != if_match:
                return False
            path.unlink()
            return True

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        for dirpath, dirnames, filenames in os.walk(self.root):
            if Path(dirpath) == self.root:
                dirnames[:] = [d for d in dirnames if d != _TMP]
            dirnames.sort()
            for name in sorted(filenames):
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    try:
                        yield self._info(key, full.stat())
                    except FileNotFoundError:  # deleted while listing
                        continue

    def locate(self, key: str, expires_seconds: int) -> Location:
        del expires_seconds  # a local file does not expire
        return self._path(key)
