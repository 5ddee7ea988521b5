"""Smoke tests of the real S3 server: signatures and presigned URLs are enforced, not mocked."""

from __future__ import annotations

import time
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from servicekit import Service

pytestmark = pytest.mark.s3


def _client(s3: Service, *, readonly: bool = False, secret: str | None = None) -> Any:
    prefix = "S3_READONLY_" if readonly else "S3_"
    return boto3.client(
        "s3",
        endpoint_url=s3["S3_ENDPOINT"],
        aws_access_key_id=s3[prefix + "ACCESS_KEY"],
        aws_secret_access_key=secret or s3[prefix + "SECRET_KEY"],
        region_name=s3["S3_REGION"],
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


@pytest.fixture
def bucket(s3: Service) -> str:
    name = f"smoke-{time.monotonic_ns()}"
    _client(s3).create_bucket(Bucket=name)
    return name


def test_object_round_trips(s3: Service, bucket: str) -> None:
    client = _client(s3)
    payload = bytes(range(256)) * 4096  # 1 MiB, every byte value
    client.put_object(Bucket=bucket, Key="dir/blob.bin", Body=payload)
    assert client.get_object(Bucket=bucket, Key="dir/blob.bin")["Body"].read() == payload
    listed = client.list_objects_v2(Bucket=bucket, Prefix="dir/")["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [("dir/blob.bin", len(payload))]


def test_presigned_url_works_and_a_tampered_one_is_refused(s3: Service, bucket: str) -> None:
    client = _client(s3)
    client.put_object(Bucket=bucket, Key="image.sif", Body=b"sif-bytes")
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "image.sif"}, ExpiresIn=300
    )
    good = httpx.get(url)
    assert good.status_code == 200
    assert good.content == b"sif-bytes"

    signature = url.rsplit("X-Amz-Signature=", 1)[1][:64]
    flipped = ("1" if signature[0] != "1" else "2") + signature[1:]
    assert httpx.get(url.replace(signature, flipped)).status_code == 403
    other_key = url.replace("image.sif", "other.sif")
    assert httpx.get(other_key).status_code == 403


def test_expired_presigned_url_and_anonymous_reads_are_refused(s3: Service, bucket: str) -> None:
    client = _client(s3)
    client.put_object(Bucket=bucket, Key="k", Body=b"v")
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=1
    )
    time.sleep(2.1)
    assert httpx.get(url).status_code == 403
    assert httpx.get(f"{s3['S3_ENDPOINT']}/{bucket}/k").status_code == 403


def test_wrong_secret_and_readonly_identity_cannot_write(s3: Service, bucket: str) -> None:
    with pytest.raises(ClientError) as bad_secret:
        _client(s3, secret="not-the-secret").put_object(Bucket=bucket, Key="x", Body=b"x")
    assert bad_secret.value.response["Error"]["Code"] == "SignatureDoesNotMatch"

    reader = _client(s3, readonly=True)
    with pytest.raises(ClientError) as denied:
        reader.put_object(Bucket=bucket, Key="x", Body=b"x")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    _client(s3).put_object(Bucket=bucket, Key="x", Body=b"x")
    assert reader.get_object(Bucket=bucket, Key="x")["Body"].read() == b"x"
