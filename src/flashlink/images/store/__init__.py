"""Object stores for built SIFs and their metadata: a directory (default) or S3."""

from __future__ import annotations

__all__ = ["DirectoryStore", "Location", "ObjectInfo", "ObjectStore", "S3Store"]

from flashlink.images.store._base import Location, ObjectInfo, ObjectStore
from flashlink.images.store.directory import DirectoryStore
from flashlink.images.store.s3 import S3Store
