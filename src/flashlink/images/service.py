"""Assemble the service from its settings: store, resolver, builder, cache, tokens, app."""

from __future__ import annotations

__all__ = ["app_from_settings", "cache_from_settings", "store_from_settings"]

from fastapi import FastAPI

from flashlink.images.app import create_app
from flashlink.images.builders import ApptainerBuilder
from flashlink.images.cache import CacheSettings, ImageCache
from flashlink.images.errors import ConfigError
from flashlink.images.registry import RegistryDigestResolver
from flashlink.images.settings import ImagesSettings, StoreSettings
from flashlink.images.sources import SourceResolver, SourceRule
from flashlink.images.store import DirectoryStore, ObjectStore, S3Store
from flashlink.images.tokens import TokenAuthority


def store_from_settings(settings: StoreSettings) -> ObjectStore:
    if settings.kind == "directory":
        return DirectoryStore(settings.path)
    if settings.bucket is None:
        raise ConfigError("store.bucket: required when store.kind = 's3'")
    return S3Store(
        bucket=settings.bucket,
        prefix=settings.prefix,
        endpoint_url=settings.endpoint_url,
        public_endpoint_url=settings.public_endpoint_url,
        region=settings.region,
        access_key=settings.access_key,
        secret_key=settings.secret_key.get_secret_value() if settings.secret_key else None,
        addressing_style=settings.addressing_style,
        create_bucket=settings.create_bucket,
    )


def cache_from_settings(settings: ImagesSettings, store: ObjectStore | None = None) -> ImageCache:
    build = settings.build
    resolver = SourceResolver(
        [SourceRule(rule.match, rule.source) for rule in settings.sources],
        allow_registry=build.allow_registry,
        podman=build.podman,
        digest_ttl=build.digest_ttl,
        registry_digest=RegistryDigestResolver(
            timeout=build.registry_timeout, insecure_registries=tuple(build.insecure_registries)
        )
        if build.allow_registry
        else None,
    )
    builder = ApptainerBuilder(
        apptainer=build.apptainer,
        podman=build.podman,
        timeout=build.timeout,
        extra_args=build.apptainer_args,
        cache_dir=build.apptainer_cache_dir,
    )
    cache_settings = CacheSettings(
        workers=build.workers,
        max_pending=build.max_pending,
        workdir=build.workdir,
        lease_ttl=build.lease_ttl,
        failure_ttl=build.failure_ttl,
        presign_expiry=settings.store.presign_expiry,
        meta_ttl=build.meta_ttl,
        retry_after=build.retry_after,
    )
    store = store or store_from_settings(settings.store)
    store.check()
    return ImageCache(store, builder, resolver, cache_settings)


def app_from_settings(settings: ImagesSettings) -> FastAPI:
    """The FastAPI app ``flashlink images serve`` runs."""
    authority = TokenAuthority(settings.auth.token(), max_ttl=settings.auth.max_token_ttl)
    cache = cache_from_settings(settings)
    ev = settings.eviction
    return create_app(
        cache,
        authority,
        default_token_ttl=settings.auth.default_token_ttl,
        eviction=(ev.max_age, ev.max_total_bytes, ev.interval),
    )
