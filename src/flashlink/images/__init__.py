"""Image cache: container image -> SIF builds cached in S3 or a directory, token-protected.

The service (``flashlink images serve``) builds each image once into a SIF, keeps it in an
:class:`~flashlink.images.store.ObjectStore` and answers jobs with a presigned URL; the
:class:`ImagesClient` is what jobs, the plugin and the CLI use. See docs/images.md.
"""

from __future__ import annotations

__all__ = [
    "ApptainerBuilder",
    "Builder",
    "CacheSettings",
    "DirectoryStore",
    "ImageCache",
    "ImageMeta",
    "ImageReference",
    "ImagesClient",
    "ImagesSettings",
    "ObjectStore",
    "S3Store",
    "Source",
    "SourceResolver",
    "SourceRule",
    "TokenAuthority",
    "create_app",
    "load_settings",
]

from flashlink.images.app import create_app
from flashlink.images.builders import ApptainerBuilder, Builder
from flashlink.images.cache import CacheSettings, ImageCache
from flashlink.images.client import ImagesClient
from flashlink.images.models import ImageMeta
from flashlink.images.reference import ImageReference
from flashlink.images.settings import ImagesSettings, load_settings
from flashlink.images.sources import Source, SourceResolver, SourceRule
from flashlink.images.store import DirectoryStore, ObjectStore, S3Store
from flashlink.images.tokens import TokenAuthority
