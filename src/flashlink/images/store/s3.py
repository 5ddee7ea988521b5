"""``S3Store``: objects in an S3 bucket through boto3 (AWS, MinIO, Ceph RGW, SeaweedFS).

Two clients: one talks to ``endpoint_url`` (what the service reaches), the other only signs
presigned URLs for ``public_endpoint_url`` (what jobs reach). Signing is offline, and SigV4 signs
the Host header, so a URL signed for ``https://s3.example.org`` is valid only when fetched there.

Uploads go through boto3's managed transfer (multipart above 64 MiB in 16 MiB parts, read from
the file part by part, so memory does not grow with the image) with ``ChecksumAlgorithm=SHA256``:
the server verifies each part's checksum before it accepts it (SeaweedFS answers BadDigest to a
wrong one, measured). The whole-file sha256 is stored as user metadata (``x-amz-meta-sha256``)
for clients to verify.
"""

from __future__ import annotations

__all__ = ["S3Store"]

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from flashlink.images.errors import ConfigError, ObjectNotFoundError, StoreError
from flashlink.images.store._base import Location, ObjectInfo

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_PRECONDITION_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
# Parts of 16 MiB, 4 in flight: an upload holds at most ~64 MiB whatever the SIF's size
# (boto3's defaults, 8 MiB x 10 threads, are similar; see benchmarks/images_cache.py for RSS).
_MULTIPART_THRESHOLD = 64 << 20
_PART_SIZE = 16 << 20
_UPLOAD_THREADS = 4


def _code(exc: Exception) -> str:
    response: Any = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class S3Store:
    """Objects under ``prefix`` in ``bucket``."""

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
        addressing_style: Literal["auto", "virtual", "path"] = "path",
        create_bucket: bool = False,
    ) -> None:
        # boto3 (and botocore, ~80 MB) is the optional extra "s3": imported only when used.
        try:
            import boto3  # noqa: PLC0415
            from boto3.s3.transfer import TransferConfig  # noqa: PLC0415
            from botocore.config import Config  # noqa: PLC0415
            from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415
        except ImportError as exc:  # pragma: no cover - the extra is part of dev installs
            raise ConfigError(
                "the S3 image store needs boto3: pip install 'flashlink[s3]'"
            ) from exc
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self._errors: tuple[type[Exception], ...] = (BotoCoreError, ClientError)
        self._upload_errors: tuple[type[Exception], ...] = (BotoCoreError, ClientError, OSError)
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": addressing_style},
            retries={"max_attempts": 3, "mode": "standard"},
            # the request threads of the service and the build workers share this client
            max_pool_connections=64,
        )
        kwargs: dict[str, Any] = {
            "region_name": region,
            "aws_access_key_id": access_key,
            "aws_secret_access_key": secret_key,
            "config": config,
        }
        self._client: S3Client = boto3.client("s3", endpoint_url=endpoint_url, **kwargs)
        self._signer: S3Client = boto3.client(
            "s3", endpoint_url=public_endpoint_url or endpoint_url, **kwargs
        )
        self._transfer = TransferConfig(
            multipart_threshold=_MULTIPART_THRESHOLD,
            multipart_chunksize=_PART_SIZE,
            max_concurrency=_UPLOAD_THREADS,
        )
        # dict get/set are atomic under the GIL; a race only presigns twice
        self._presigned: dict[tuple[str, int], tuple[float, str]] = {}
        if create_bucket:
            self._ensure_bucket()

    def _ensure_bucket(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except self._errors as exc:
            if _code(exc) not in _MISSING_CODES | {"NoSuchBucket"}:
                raise self._error("cannot check bucket", exc) from exc
            try:
                self._client.create_bucket(Bucket=self.bucket)
            except self._errors as exc2:
                if _code(exc2) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise self._error("cannot create bucket", exc2) from exc2

    def _error(self, what: str, exc: Exception) -> StoreError:
        return StoreError(f"S3 {what} (bucket {self.bucket!r} at {self.endpoint_url}): {exc}")

    def describe(self) -> str:
        return f"s3 bucket {self.bucket!r} prefix {self.prefix!r} at {self.endpoint_url or 'AWS'}"

    def check(self) -> None:
        try:
            self._client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
        except self._errors as exc:
            raise self._error(
                "listing failed; check the bucket, endpoint and credentials", exc
            ) from exc

    def _key(self, key: str) -> str:
        return self.prefix + key

    def head(self, key: str) -> ObjectInfo | None:
        try:
            r = self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except self._errors as exc:
            if _code(exc) in _MISSING_CODES:
                return None
            raise self._error(f"HEAD {key!r} failed", exc) from exc
        return ObjectInfo(key, r["ContentLength"], r["ETag"], r["LastModified"].timestamp())

    def get_bytes(self, key: str) -> tuple[bytes, ObjectInfo]:
        try:
            r = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            data = r["Body"].read()
        except self._errors as exc:
            if _code(exc) in _MISSING_CODES:
                raise ObjectNotFoundError(f"no object {key!r} in {self.describe()}") from None
            raise self._error(f"GET {key!r} failed", exc) from exc
        return data, ObjectInfo(key, len(data), r["ETag"], r["LastModified"].timestamp())

    def put_bytes(
        self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> ObjectInfo | None:
        extra: dict[str, Any] = {}
        if if_none_match:
            extra["IfNoneMatch"] = "*"
        if if_match is not None:
            extra["IfMatch"] = if_match
        try:
            r = self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra)
        except self._errors as exc:
            if extra and _code(exc) in _PRECONDITION_CODES | _MISSING_CODES:
                return None
            raise self._error(f"PUT {key!r} failed", exc) from exc
        # LastModified is not in a PUT answer; the caller only needs the etag of its version.
        return ObjectInfo(key, len(data), r["ETag"], 0.0)

    def put_file(self, key: str, path: Path, *, sha256: str) -> ObjectInfo:
        try:
            self._client.upload_file(
                str(path),
                self.bucket,
                self._key(key),
                ExtraArgs={"ChecksumAlgorithm": "SHA256", "Metadata": {"sha256": sha256}},
                Config=self._transfer,
            )
        except self._upload_errors as exc:
            raise self._error(f"upload of {path} as {key!r} failed", exc) from exc
        info = self.head(key)
        size = Path(path).stat().st_size
        if info is None or info.size != size:
            raise StoreError(
                f"S3 upload of {key!r} did not stick: expected {size} bytes, the bucket has "
                f"{'nothing' if info is None else info.size}"
            )
        return info

    def delete(self, key: str, *, if_match: str | None = None) -> bool:
        extra: dict[str, Any] = {"IfMatch": if_match} if if_match is not None else {}
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key), **extra)
        except self._errors as exc:
            if if_match is not None and _code(exc) in _PRECONDITION_CODES | _MISSING_CODES:
                return False
            raise self._error(f"DELETE {key!r} failed", exc) from exc
        return True

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for obj in page.get("Contents", []):
                    yield ObjectInfo(
                        obj["Key"][len(self.prefix) :],
                        obj["Size"],
                        obj["ETag"],
                        obj["LastModified"].timestamp(),
                    )
        except self._errors as exc:
            raise self._error(f"listing {prefix!r} failed", exc) from exc

    def locate(self, key: str, expires_seconds: int) -> Location:
        # Presigning costs 0.5 ms of CPU (a third of a cached hit, measured): a URL is reused
        # for a quarter of its validity, so whoever gets it still has >= 3/4 of it left.
        now = time.monotonic()
        cached = self._presigned.get((key, expires_seconds))
        if cached is not None and now - cached[0] < expires_seconds / 4:
            return cached[1]
        url = self._signer.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._key(key)},
            ExpiresIn=expires_seconds,
        )
        if len(self._presigned) > 10_000:
            self._presigned.clear()
        self._presigned[(key, expires_seconds)] = (now, url)
        return url
