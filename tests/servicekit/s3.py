"""Clients of the ``s3`` test service (SeaweedFS): its settings as AWS variables, a boto3
client, a fresh bucket. One definition for every test that talks to it."""

from __future__ import annotations

import os
import time
from typing import Any

import boto3
from botocore.config import Config

from servicekit._service import Service


def aws_env(s3: Service) -> dict[str, str]:
    """The service's read-write identity as the standard AWS variables (boto3, s3fs, jobs)."""
    return {
        "AWS_ACCESS_KEY_ID": s3["S3_ACCESS_KEY"],
        "AWS_SECRET_ACCESS_KEY": s3["S3_SECRET_KEY"],
        "AWS_ENDPOINT_URL": s3["S3_ENDPOINT"],
        "AWS_DEFAULT_REGION": s3["S3_REGION"],
    }


def client(s3: Service) -> Any:
    """A boto3 S3 client with the read-write identity (SigV4, path-style addressing)."""
    return boto3.client(
        "s3",
        endpoint_url=s3["S3_ENDPOINT"],
        aws_access_key_id=s3["S3_ACCESS_KEY"],
        aws_secret_access_key=s3["S3_SECRET_KEY"],
        region_name=s3["S3_REGION"],
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def new_bucket(s3: Service, prefix: str) -> str:
    """Create a bucket no other test (or earlier run on the same service) uses; its name."""
    name = f"{prefix}-{os.getpid()}-{time.monotonic_ns()}"
    client(s3).create_bucket(Bucket=name)
    return name
