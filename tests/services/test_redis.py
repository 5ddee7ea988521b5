"""Smoke test of the real Redis server: it answers, and only with its password."""

from __future__ import annotations

import pytest
import redis as redis_client

from servicekit import Service

pytestmark = pytest.mark.redis


def test_set_get_and_password_is_required(redis: Service) -> None:
    client = redis_client.Redis.from_url(redis["REDIS_URL"])
    try:
        client.set("flashlink:smoke", "ok", ex=60)
        assert client.get("flashlink:smoke") == b"ok"
    finally:
        client.close()
    url = redis["REDIS_URL"]
    anonymous = redis_client.Redis.from_url("redis://" + url.split("@", 1)[1])
    try:
        with pytest.raises(redis_client.AuthenticationError):
            anonymous.get("flashlink:smoke")
    finally:
        anonymous.close()
