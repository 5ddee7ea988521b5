"""Prometheus metrics of the plugin (``GET /metrics``), one registry per plugin instance.

Names (all prefixed ``flashlink_plugin_``):

- ``requests_total{endpoint,code}``, ``request_seconds{endpoint}``: every HTTP request
  (unknown paths count as endpoint ``other``, so a scan cannot blow up the label set);
- ``pods{site,phase}``: pods known per phase (Pending/Running/Succeeded/Failed), deleted ones
  excluded, read from the store at scrape time;
- ``backend_calls_total{site,call}``, ``backend_errors_total{site,call,error}``,
  ``backend_call_seconds{site,call}``: every call into a backend (submit, poll, cancel,
  fetch, capacity);
- ``reconcile_lag_seconds{site}``: time since the last complete reconcile of the site (grows
  when the backend is down); ``reconcile_seconds{site}``: how long a pass takes.
"""

from __future__ import annotations

__all__ = ["MeteredBackend", "Metrics"]

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flashlink.backends import Backend, BatchJob, Capacity, JobState

T = TypeVar("T")

# request latencies of a store-only endpoint are ~0.1-1 ms; backend calls 1 ms - 60 s
_REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5, 10, 60)
_BACKEND_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 120)


class _StoreCollector(Collector):
    def __init__(
        self,
        counts: Callable[[], dict[tuple[str, str], int]],
        lags: Callable[[], dict[str, float]],
    ) -> None:
        self._counts = counts
        self._lags = lags

    def collect(self) -> Iterator[Metric]:
        pods = GaugeMetricFamily(
            "flashlink_plugin_pods",
            "Pods known to the plugin, per site and phase",
            labels=["site", "phase"],
        )
        for (site, phase), n in sorted(self._counts().items()):
            pods.add_metric([site, phase], n)
        yield pods
        lag = GaugeMetricFamily(
            "flashlink_plugin_reconcile_lag_seconds",
            "Seconds since the last complete reconcile pass of a site",
            labels=["site"],
        )
        for site, seconds in sorted(self._lags().items()):
            lag.add_metric([site], seconds)
        yield lag


class Metrics:
    """The plugin's metric objects and their registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "flashlink_plugin_requests",
            "HTTP requests served, per endpoint and status code",
            ["endpoint", "code"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "flashlink_plugin_request_seconds",
            "HTTP request latency per endpoint",
            ["endpoint"],
            buckets=_REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.backend_calls = Counter(
            "flashlink_plugin_backend_calls",
            "Calls into a site's backend",
            ["site", "call"],
            registry=self.registry,
        )
        self.backend_errors = Counter(
            "flashlink_plugin_backend_errors",
            "Failed calls into a site's backend, per error class",
            ["site", "call", "error"],
            registry=self.registry,
        )
        self.backend_seconds = Histogram(
            "flashlink_plugin_backend_call_seconds",
            "Latency of calls into a site's backend",
            ["site", "call"],
            buckets=_BACKEND_BUCKETS,
            registry=self.registry,
        )
        self.reconcile_seconds = Histogram(
            "flashlink_plugin_reconcile_seconds",
            "Duration of one reconcile pass of a site",
            ["site"],
            buckets=_BACKEND_BUCKETS,
            registry=self.registry,
        )

    def watch_store(
        self,
        counts: Callable[[], dict[tuple[str, str], int]],
        lags: Callable[[], dict[str, float]],
    ) -> None:
        """Export pods per phase and reconcile lags, computed when scraped."""
        self.registry.register(_StoreCollector(counts, lags))


class MeteredBackend:
    """A backend whose every call is counted and timed (the plugin uses only this wrapper)."""

    def __init__(self, site: str, backend: Backend, metrics: Metrics) -> None:
        self.site = site
        self.inner = backend
        self._m = metrics

    @property
    def kind(self) -> str:
        return self.inner.kind

    def _call(self, call: str, fn: Callable[[], T]) -> T:
        self._m.backend_calls.labels(self.site, call).inc()
        t0 = time.perf_counter()
        try:
            return fn()
        except Exception as exc:
            self._m.backend_errors.labels(self.site, call, type(exc).__name__).inc()
            raise
        finally:
            self._m.backend_seconds.labels(self.site, call).observe(time.perf_counter() - t0)

    def submit(self, jobs: Sequence[BatchJob]) -> list[str]:
        return self._call("submit", lambda: self.inner.submit(jobs))

    def poll(self, ids: Sequence[str]) -> dict[str, JobState]:
        return self._call("poll", lambda: self.inner.poll(ids))

    def cancel(self, backend_id: str) -> None:
        self._call("cancel", lambda: self.inner.cancel(backend_id))

    def fetch(self, backend_id: str) -> Path:
        return self._call("fetch", lambda: self.inner.fetch(backend_id))

    def capacity(self) -> Capacity:
        return self._call("capacity", self.inner.capacity)

    def describe(self) -> dict[str, Any]:
        """The backend's own description (``describe()``, optional in the protocol)."""
        describe = getattr(self.inner, "describe", None)
        if describe is None:
            return {"kind": self.inner.kind}
        result: dict[str, Any] = self._call("describe", describe)
        return result

    def close(self) -> None:
        self.inner.close()
