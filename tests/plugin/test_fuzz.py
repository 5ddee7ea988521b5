"""Fuzzing every endpoint: no input makes the plugin answer 500 or stop answering.

Bodies are arbitrary JSON values, arbitrary bytes, valid interLink requests with one field
replaced by something else, JSON with lone surrogates, very deep nesting and very large bodies.
Every answer must be a deliberate one (200, 400, 404, 413, 422), and the plugin must still be
healthy afterwards. Jobs that a valid mutation creates run for real and end at once (their
container runtime does not exist).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flashlink.plugin import parse_plugin_config
from plugin.support import container, create_request, pod, serving, uid

NO_RUNTIME = {"runtime": "apptainer", "apptainer": {"executable": "/nonexistent/apptainer"}}
ENDPOINTS = [("POST", "/create"), ("GET", "/status"), ("POST", "/delete"), ("GET", "/getLogs")]
ALLOWED = {200, 400, 404, 413, 422}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=25,
)

VALID_POD = pod(
    uid(1, 0xF0),
    "fuzzed",
    [container("main", "echo hi", env=[{"name": "A", "value": "1"}])],
    init=[container("init", "true")],
    volumes=[{"name": "cfg", "configMap": {"name": "cm"}}],
)
VALID: dict[str, Any] = {
    "/create": create_request(
        VALID_POD, config_maps=[{"metadata": {"name": "cm"}, "data": {"k": "v"}}]
    ),
    "/status": [VALID_POD],
    "/delete": VALID_POD,
    "/getLogs": {
        "Namespace": "default",
        "PodUID": uid(1, 0xF0),
        "PodName": "fuzzed",
        "ContainerName": "main",
        "Opts": {"Tail": 5, "Bytes": 0, "Timestamps": True, "SinceTime": "0001-01-01T00:00:00Z"},
    },
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    state = tmp_path_factory.mktemp("fuzz")
    config = parse_plugin_config(
        {
            "state_dir": str(state),
            "render": NO_RUNTIME,
            "server": {"max_body_bytes": 1024 * 1024},
            "sites": {"local": {"kind": "local", "backend": {"cpus": 2}}},
        }
    )
    with serving(config) as (http, _):
        yield http
        assert http.get("/healthz").status_code == 200


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += _paths(value, (*prefix, i))
    return out


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    doc = copy.deepcopy(doc)
    target = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return doc


def _check(client: httpx.Client, method: str, path: str, body: bytes) -> None:
    r = client.request(method, path, content=body)
    assert r.status_code in ALLOWED, (path, body[:300], r.status_code, r.text[:500])


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values)
def test_any_json_value_gets_a_deliberate_answer(
    client: httpx.Client, method: str, path: str, value: Any
) -> None:
    _check(client, method, path, json.dumps(value).encode())


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=200))
def test_any_bytes_get_a_deliberate_answer(
    client: httpx.Client, method: str, path: str, body: bytes
) -> None:
    _check(client, method, path, body)


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_valid_requests_with_one_field_changed(
    client: httpx.Client, method: str, path: str, data: st.DataObject
) -> None:
    valid = VALID[path]
    where = data.draw(st.sampled_from(_paths(valid)), label="field")
    value = data.draw(json_values, label="value")
    _check(client, method, path, json.dumps(_replace(valid, where, value)).encode())


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_lone_surrogates_deep_nesting_and_huge_bodies(
    client: httpx.Client, method: str, path: str
) -> None:
    text = json.dumps(VALID[path])
    for needle in ('"default"', '"main"', '"fuzzed"', uid(1, 0xF0)):
        _check(client, method, path, text.replace(needle, '"\\ud800x"', 1).encode())
    _check(client, method, path, b"[" * 100_000 + b"]" * 100_000)
    r = client.request(method, path, content=b" " * (2 * 1024 * 1024))
    assert r.status_code == 413


def test_the_state_survived_the_fuzzing(client: httpx.Client, tmp_path: Path) -> None:
    r = client.request("GET", "/status", json=[])
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    assert client.get("/system-info").json()["sites"]["local"]["reachable"] is True
