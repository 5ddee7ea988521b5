"""ConfigMaps and Secrets: decoded bytes, base64 checked on read."""

from __future__ import annotations

import base64

import pytest

from flashlink.kube import InvalidObjectError, parse_config_map, parse_secret


def test_config_map_files_merge_text_and_binary() -> None:
    binary = bytes(range(256))
    cm = parse_config_map(
        {
            "metadata": {"name": "app"},
            "data": {"app.yaml": "k: v\n", "é.txt": "ünïcode"},
            "binaryData": {"blob": base64.b64encode(binary).decode()},
        }
    )
    assert cm.files() == {"app.yaml": b"k: v\n", "é.txt": "ünïcode".encode(), "blob": binary}


def test_secret_data_is_decoded_and_string_data_wins() -> None:
    secret = parse_secret(
        {
            "metadata": {"name": "creds"},
            "type": "Opaque",
            "data": {"password": "czNjcjN0", "user": base64.b64encode(b"old").decode()},
            "stringData": {"user": "new"},
        }
    )
    assert secret.files() == {"password": b"s3cr3t", "user": b"new"}


def test_invalid_base64_names_the_key() -> None:
    with pytest.raises(InvalidObjectError) as info:
        parse_secret({"metadata": {"name": "s"}, "data": {"token": "not base64!"}})
    assert "data" in str(info.value)
    assert "'token'" in str(info.value)


def test_wrong_kind_is_refused() -> None:
    with pytest.raises(InvalidObjectError, match="expected 'Secret', got 'ConfigMap'"):
        parse_secret({"kind": "ConfigMap", "metadata": {"name": "x"}})


def test_nulls_are_empty() -> None:
    cm = parse_config_map({"metadata": {"name": "x"}, "data": None, "binaryData": None})
    assert cm.files() == {}
