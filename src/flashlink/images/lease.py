"""Build leases: at most one replica builds a cache entry, and a dead builder's lease expires.

A lease is a small object (``lease.json``) next to the entry it guards:

- **acquire**: create it with ``If-None-Match: *``; exactly one of any number of racing
  replicas succeeds (S3 answers the others 412). If it exists but has expired (its holder died),
  take it over with ``If-Match: <the etag just read>``: of several replicas seeing the same stale
  lease, one wins the swap.
- **renew**: rewrite it with ``If-Match: <own etag>`` every ``ttl / 3`` seconds while building;
  a failed renewal means the lease was lost (the builder stalled past its expiry).
- **release**: delete it with ``If-Match: <own etag>``, so a lease taken over meanwhile survives.

Expiry compares wall clocks of different replicas: they must agree to well within ``ttl``
(NTP-synchronised hosts do, by milliseconds; the default ttl is 60 s).
"""

from __future__ import annotations

__all__ = ["Lease"]

import logging
import threading
import time

from pydantic import ValidationError

from flashlink.images.errors import ObjectNotFoundError, StoreError
from flashlink.images.models import LeaseRecord
from flashlink.images.store import ObjectStore

_log = logging.getLogger(__name__)


class Lease:
    """A held lease; use :meth:`acquire` to get one."""

    def __init__(self, store: ObjectStore, key: str, record: LeaseRecord, etag: str, ttl: float):
        self.store = store
        self.key = key
        self.record = record
        self.etag = etag
        self.ttl = ttl
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def read(cls, store: ObjectStore, key: str) -> tuple[LeaseRecord, str] | None:
        """The current lease record and its etag, or None when there is none (or it is garbage)."""
        try:
            data, info = store.get_bytes(key)
        except ObjectNotFoundError:
            return None
        try:
            return LeaseRecord.model_validate_json(data), info.etag
        except ValidationError:
            _log.warning("lease %s is unreadable; treating it as expired", key)
            return LeaseRecord(owner="?", acquired_at=0, expires_at=0), info.etag

    @classmethod
    def acquire(cls, store: ObjectStore, key: str, *, owner: str, ttl: float) -> Lease | None:
        """The lease, or None when a live lease of another holder exists."""
        now = time.time()
        record = LeaseRecord(owner=owner, acquired_at=now, expires_at=now + ttl)
        data = record.model_dump_json().encode()
        created = store.put_bytes(key, data, if_none_match=True)
        if created is not None:
            return cls(store, key, record, created.etag, ttl)
        current = cls.read(store, key)
        if current is None:  # released between our create and our read: try once more
            created = store.put_bytes(key, data, if_none_match=True)
            return None if created is None else cls(store, key, record, created.etag, ttl)
        held, etag = current
        if held.expires_at > now:
            return None
        taken = store.put_bytes(key, data, if_match=etag)
        if taken is None:
            return None
        _log.warning("took over the expired build lease %s of %s", key, held.owner)
        return cls(store, key, record, taken.etag, ttl)

    def renew(self) -> bool:
        now = time.time()
        record = LeaseRecord(owner=self.record.owner, acquired_at=self.record.acquired_at,
                             expires_at=now + self.ttl)  # fmt: skip
        info = self.store.put_bytes(self.key, record.model_dump_json().encode(), if_match=self.etag)
        if info is None:
            self.lost = True
            _log.error("lost the build lease %s (held by another replica now)", self.key)
            return False
        self.record, self.etag = record, info.etag
        return True

    def _keep_alive(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if not self.renew():
                    return
            except StoreError as exc:  # transient: try again at the next tick
                _log.warning("renewing the build lease %s failed: %s", self.key, exc)

    def __enter__(self) -> Lease:
        self._thread = threading.Thread(
            target=self._keep_alive, name=f"lease {self.key}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.release()

    def release(self) -> None:
        if not self.lost:
            try:
                self.store.delete(self.key, if_match=self.etag)
            except StoreError as exc:  # it expires by itself
                _log.warning("releasing the build lease %s failed: %s", self.key, exc)
