"""Periodic eviction in a background thread of the service (off unless a limit is set)."""

from __future__ import annotations

__all__ = ["EvictionLoop"]

import logging
import threading

from flashlink.images.cache import ImageCache
from flashlink.images.errors import StoreError

_log = logging.getLogger(__name__)


class EvictionLoop:
    """Calls :meth:`ImageCache.evict` every ``interval`` seconds until stopped."""

    def __init__(
        self,
        cache: ImageCache,
        *,
        max_age: float | None,
        max_total_bytes: int | None,
        interval: float,
    ) -> None:
        self.cache = cache
        self.max_age = max_age
        self.max_total_bytes = max_total_bytes
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="image-eviction", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                removed = self.cache.evict(
                    max_age=self.max_age, max_total_bytes=self.max_total_bytes
                )
            except StoreError as exc:
                _log.warning("eviction failed, retrying in %.0f s: %s", self.interval, exc)
                continue
            if removed:
                _log.info("evicted %d objects", len(removed))
