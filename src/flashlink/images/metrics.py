"""Prometheus metrics of one service instance (own registry, so tests can run several)."""

from __future__ import annotations

__all__ = ["Metrics"]

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Builds of real images take seconds to tens of minutes; hits take milliseconds.
_BUILD_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 3600)
_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    """Counters for hits, misses, builds, build time and bytes served."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.hits = Counter(
            "flashlink_images_hits", "image requests answered from the cache", registry=r
        )
        self.misses = Counter(
            "flashlink_images_misses", "image requests for an image not (yet) cached", registry=r
        )
        self.builds = Counter(
            "flashlink_images_builds", "builds run by this replica", ["result"], registry=r
        )
        self.build_seconds = Histogram(
            "flashlink_images_build_seconds",
            "build + verify + upload time",
            buckets=_BUILD_BUCKETS,
            registry=r,
        )
        self.bytes_served = Counter(
            "flashlink_images_served_bytes",
            "SIF bytes handed out: streamed by the service or redirected to the store",
            ["via"],
            registry=r,
        )
        self.failures_served = Counter(
            "flashlink_images_failures_served",
            "requests answered with a cached build failure",
            registry=r,
        )
        self.tokens_minted = Counter(
            "flashlink_images_tokens_minted", "client tokens minted", registry=r
        )
        self.auth_failures = Counter(
            "flashlink_images_auth_failures", "requests refused for a bad token", registry=r
        )
        self.builds_in_flight = Gauge(
            "flashlink_images_builds_in_flight", "builds queued or running here", registry=r
        )
        self.evicted = Counter("flashlink_images_evicted", "cache entries evicted", registry=r)
        self.request_seconds = Histogram(
            "flashlink_images_request_seconds",
            "time to answer an image request",
            ["status"],
            buckets=_REQUEST_BUCKETS,
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
