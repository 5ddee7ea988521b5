"""The HTTP surface without containers: auth, limits, bad input, site routing, ping, metrics.

The plugin is served by uvicorn in a thread of the test process, on local sites whose job
scripts name a container runtime that does not exist: every job really runs, and ends at once
with ContainerCannotRun, which is all these tests need from it.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from flashlink.backends import InvalidSiteConfigError
from flashlink.plugin import Plugin, create_app, make_server, parse_plugin_config
from plugin.support import container, create_request, pod, serving, uid, vk_phase

NO_RUNTIME = {"runtime": "apptainer", "apptainer": {"executable": "/nonexistent/apptainer"}}


@contextmanager
def _client(tmp: Path, **config: Any) -> Iterator[httpx.Client]:
    data: dict[str, Any] = {
        "state_dir": str(tmp / "state"),
        "reconcile_interval": 0.2,
        "render": NO_RUNTIME,
    }
    data.update(config)
    with serving(parse_plugin_config(data)) as (client, plugin):
        client.plugin = plugin  # type: ignore[attr-defined]
        yield client


def _plugin(client: httpx.Client) -> Plugin:
    plugin = client.plugin  # type: ignore[attr-defined]
    assert isinstance(plugin, Plugin)
    return plugin


def _status(client: httpx.Client, pods: Any, **headers: str) -> httpx.Response:
    return client.request("GET", "/status", json=pods, headers=headers)


def _wait_finished(client: httpx.Client, p: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        answer = _status(client, [p]).json()
        if answer and vk_phase(answer[0]) in ("Succeeded", "Failed"):
            status: dict[str, Any] = answer[0]
            return status
        assert time.monotonic() < deadline, answer
        time.sleep(0.05)


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[httpx.Client]:
    with _client(tmp_path, sites={"local": {"kind": "local", "backend": {"cpus": 2}}}) as client:
        yield client


def test_bearer_tokens_guard_everything_but_healthz(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = tmp_path / "tokens"
    tokens.write_text("# operators\nfile-token-one\n\n  file-token-two  \n")
    monkeypatch.setenv("FLASHLINK_PLUGIN_TOKENS", "env-token, other-env-token")
    with _client(tmp_path, auth={"tokens_file": str(tokens)}) as client:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Bearer file-token-one-and-more"},
            {"Authorization": "Basic ZmlsZS10b2tlbi1vbmU="},
            {"Authorization": "file-token-one"},
        ):
            r = _status(client, [], **headers)
            assert r.status_code == 401, headers
            assert r.text == "unauthorized"  # no detail about what was wrong
            assert r.headers["www-authenticate"] == "Bearer"
        for token in ("file-token-one", "file-token-two", "env-token", "other-env-token"):
            assert _status(client, [], Authorization=f"Bearer {token}").status_code == 200
        assert client.post("/create", json={}).status_code == 401  # before any parsing
        assert client.get("/metrics").status_code == 401
        assert client.get("/healthz").status_code == 200
    text = caplog.text
    for secret in ("file-token-one", "file-token-two", "env-token"):
        assert secret not in text


def test_a_tokens_file_without_tokens_is_a_startup_error(tmp_path: Path) -> None:
    empty = tmp_path / "tokens"
    empty.write_text("# nothing yet\n")
    config = parse_plugin_config({"state_dir": str(tmp_path), "auth": {"tokens_file": str(empty)}})
    with pytest.raises(ValueError, match=r"auth.tokens_file: .* holds no token"):
        create_app(config)


def test_secrets_and_config_maps_are_never_logged(
    plain: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    p = pod(
        uid(1, 0xA1),
        "secretive",
        [container("main", "cat /s/key", volumeMounts=[{"name": "s", "mountPath": "/s"}])],
        volumes=[{"name": "s", "secret": {"secretName": "creds"}}],
    )
    value = "hunter2-top-secret"
    secret = {
        "metadata": {"name": "creds"},
        "data": {"key": base64.b64encode(value.encode()).decode()},
    }
    assert plain.post("/create", json=create_request(p, secrets=[secret])).status_code == 200
    _wait_finished(plain, p)
    assert value not in caplog.text
    assert secret["data"]["key"] not in caplog.text
    job_dir = Path(_plugin(plain).store.get(uid(1, 0xA1)).job_dir)  # type: ignore[union-attr]
    assert job_dir.stat().st_mode & 0o777 == 0o700  # the script holds the Secret
    assert (job_dir / "job.sh").stat().st_mode & 0o077 == 0


def test_bodies_beyond_the_limit_are_refused(tmp_path: Path) -> None:
    with _client(tmp_path, server={"max_body_bytes": 4096}) as client:
        r = client.post("/create", content=b"[" + b" " * 5000 + b"]")
        assert r.status_code == 413
        assert "4096" in r.text
        assert _status(client, []).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("GET", "/status", b"", 400, "no JSON body"),
        ("GET", "/status", b"{nope", 400, "not JSON"),
        ("GET", "/status", b'{"a": 1}', 400, "must be a JSON array of Pods, got dict"),
        ("GET", "/status", b"[1]", 400, "[0]: expected a Pod object, got int"),
        ("GET", "/status", b'[{"metadata": {}}]', 400, "[0].metadata.uid: expected a string"),
        ("GET", "/status", b'[{"metadata": {"uid": ""}}]', 400, "must not be empty"),
        ("GET", "/status", b'[{"metadata": {"uid": "\\ud800"}}]', 400, "not valid Unicode"),
        ("POST", "/delete", b"[]", 400, "expected a Pod object, got list"),
        ("POST", "/delete", b'{"metadata": {"uid": 7}}', 400, "metadata.uid: expected a string"),
        ("POST", "/create", b"[]", 400, "exactly one pod request, got 0"),
        ("POST", "/create", b'"pod"', 400, "expected an object with 'pod'"),
        ("POST", "/create", b'{"pod": {"metadata": {"uid": "../etc"}, "spec": {}}}', 400, None),
        ("POST", "/create", b'{"pod": {"spec": {"containers": [{}]}}}', 400, "name"),
        ("GET", "/getLogs", b"{}", 400, "Namespace"),
        ("GET", "/getLogs", b'{"Namespace": 1}', 400, "Namespace"),
        ("GET", "/nope", b"", 404, None),
    ],
)
def test_malformed_requests_get_4xx_naming_the_field(  # noqa: PLR0917 - parametrized
    plain: httpx.Client, method: str, path: str, body: bytes, status: int, message: str | None
) -> None:
    r = plain.request(method, path, content=body)
    assert r.status_code == status, r.text
    if message is not None:
        assert message in r.text


def test_the_uid_must_be_a_safe_name(plain: httpx.Client) -> None:
    p = pod("../../etc", "escape", [container("main", "true")])
    r = plain.post("/create", json=create_request(p))
    assert r.status_code == 400
    assert "pod.metadata.uid" in r.text


TWO_SITES = {
    "default_site": "cnaf",
    "taints": [{"key": "virtual-node.interlink/no-schedule", "effect": "NoSchedule"}],
    "sites": {
        "cnaf": {
            "kind": "local",
            "backend": {"cpus": 2, "memory": "4Gi", "accelerators": {"nvidia.com/gpu": 1}},
        },
        "leonardo": {
            "kind": "local",
            "backend": {"cpus": 3, "memory": "2Gi", "accelerators": {"nvidia.com/gpu": 2}},
            "render": {"timestamp_logs": False},
        },
    },
}


def _routed(n: int, **spec: Any) -> dict[str, Any]:
    p = pod(uid(n, 0xB0), f"routed-{n}", [container("main", "true")])
    p["spec"].update(spec)
    return p


def test_pods_go_to_the_site_they_select(tmp_path: Path) -> None:
    with _client(tmp_path, **TWO_SITES) as client:
        store = _plugin(client).store
        cases: dict[int, tuple[dict[str, Any], str]] = {
            1: ({}, "cnaf"),
            2: ({"tolerations": [{"key": "pool.vk.io", "value": "leonardo"}]}, "leonardo"),
            3: ({"nodeSelector": {"pool.vk.io": "leonardo"}}, "leonardo"),
            4: (
                {"tolerations": [{"key": "pool.vk.io", "operator": "Exists"}]},
                "cnaf",
            ),
        }
        for n, (spec, site) in cases.items():
            r = client.post("/create", json=create_request(_routed(n, **spec)))
            assert r.status_code == 200, r.text
            row = store.get(uid(n, 0xB0))
            assert row is not None
            assert row.site == site
            assert f"/jobs/{site}/" in row.job_dir
        unknown = client.post(
            "/create",
            json=create_request(
                _routed(5, tolerations=[{"key": "pool.vk.io", "value": "marconi"}])
            ),
        )
        assert unknown.status_code == 400
        assert "spec.tolerations[0].value: 'marconi'" in unknown.text
        assert "valid sites: cnaf, leonardo" in unknown.text
        both = [
            {"key": "pool.vk.io", "value": "cnaf"},
            {"key": "pool.vk.io", "value": "leonardo"},
        ]
        ambiguous = client.post("/create", json=create_request(_routed(6, tolerations=both)))
        assert ambiguous.status_code == 400
        assert "several sites (cnaf, leonardo)" in ambiguous.text
        selector = client.post(
            "/create", json=create_request(_routed(7, nodeSelector={"pool.vk.io": "x"}))
        )
        assert selector.status_code == 400
        assert "spec.nodeSelector.pool.vk.io: 'x'" in selector.text


def test_ping_sums_the_sites_and_system_info_lists_them(tmp_path: Path) -> None:
    with _client(tmp_path, **TWO_SITES) as client:
        plugin = _plugin(client)
        deadline = time.monotonic() + 10
        while any(r.health.capacity is None for r in plugin.reconcilers.values()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ping = _status(client, []).json()
        assert ping == {
            "status": "ok",
            "resources": {
                "cpu": "5",
                "memory": f"{6 * 1024 * 1024}Ki",
                "pods": "2000",
                "accelerators": [{"resourceType": "nvidia.com/gpu", "available": "3"}],
            },
            "taints": [
                {"key": "virtual-node.interlink/no-schedule", "value": "", "effect": "NoSchedule"}
            ],
        }
        info = client.get("/system-info").json()
        assert info["status"] == "ok"
        assert info["default_site"] == "cnaf"
        assert set(info["sites"]) == {"cnaf", "leonardo"}
        leonardo = info["sites"]["leonardo"]
        assert leonardo["kind"] == "local"
        assert leonardo["reachable"] is True
        assert leonardo["capacity"]["cpu"] == 3
        assert leonardo["backend"]["kind"] == "local"


def test_metrics_count_requests_pods_and_backend_calls(plain: httpx.Client) -> None:
    p = pod(uid(1, 0xC0), "counted", [container("main", "true")])
    assert plain.post("/create", json=create_request(p)).status_code == 200
    status = _wait_finished(plain, p)
    assert status["containers"][0]["state"]["terminated"]["reason"] == "ContainerCannotRun"
    plain.get("/no-such-endpoint")
    text = plain.get("/metrics").text
    for line in (
        'flashlink_plugin_requests_total{code="200",endpoint="/create"} 1.0',
        'flashlink_plugin_requests_total{code="404",endpoint="other"} 1.0',
        'flashlink_plugin_pods{phase="Failed",site="local"} 1.0',
        'flashlink_plugin_backend_calls_total{call="submit",site="local"} 1.0',
    ):
        assert line in text, line
    for name in (
        "flashlink_plugin_request_seconds_bucket",
        'flashlink_plugin_backend_calls_total{call="poll",site="local"}',
        "flashlink_plugin_backend_call_seconds_bucket",
        'flashlink_plugin_reconcile_lag_seconds{site="local"}',
        "flashlink_plugin_reconcile_seconds_count",
    ):
        assert name in text, name


def test_a_refused_pod_is_reported_and_a_retry_tries_again(plain: httpx.Client) -> None:
    p = pod(
        uid(1, 0xD0),
        "too-big",
        [container("main", "true", resources={"requests": {"cpu": "64"}})],
    )
    for attempt in (1, 2):
        r = plain.post("/create", json=create_request(p))
        assert r.status_code == 422
        assert "requests 64 CPUs but site 'local' lends 2" in r.text
        row = _plugin(plain).store.get(uid(1, 0xD0))
        assert row is not None
        assert (row.state, row.attempts) == ("rejected", attempt)
    status = _status(plain, [p]).json()[0]
    assert vk_phase(status) == "Failed"
    terminated = status["containers"][0]["state"]["terminated"]
    assert terminated["reason"] == "SubmitFailed"
    assert "64 CPUs" in terminated["message"]
    assert plain.post("/delete", json=p).status_code == 200
    gone = plain.post("/create", json=create_request(p))  # deleted: not tried a third time
    assert gone.status_code == 400
    assert "was deleted" in gone.text


def test_unknown_config_keys_are_errors_that_name_them(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"reconcile_intervall: Extra inputs"):
        parse_plugin_config({"reconcile_intervall": 1})
    with pytest.raises(ValueError, match=r"default_site 'x' is not a configured site"):
        parse_plugin_config({"default_site": "x"})
    with pytest.raises(ValueError, match=r"render: runtime"):
        parse_plugin_config({"render": {"runtime": "docker"}})
    with pytest.raises(ValueError, match=r"sites.a.render: apptainer.userns"):
        parse_plugin_config(
            {"sites": {"a": {"kind": "local", "render": {"apptainer": {"userns": "maybe"}}}}}
        )
    with pytest.raises(ValueError, match=r"not valid TOML"):
        parse_plugin_config("state_dir = ")
    with pytest.raises(InvalidSiteConfigError, match=r"sites.a.backend.cpus: Input should be"):
        parse_plugin_config({"sites": {"a": {"kind": "local", "backend": {"cpus": -1}}}})
    with pytest.raises(InvalidSiteConfigError, match=r"unknown site kind 'k8s'"):
        parse_plugin_config({"sites": {"a": {"kind": "k8s"}}})


def test_the_plugin_serves_on_a_unix_socket(tmp_path: Path) -> None:
    """interLink's SidecarURL may be unix:///path.sock: requests then go to host 'unix'."""
    socket_path = tmp_path / "run" / "plugin.sock"
    config = parse_plugin_config(
        {"state_dir": str(tmp_path / "state"), "server": {"socket": str(socket_path)}}
    )
    server = make_server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        transport = httpx.HTTPTransport(uds=str(socket_path))
        with httpx.Client(transport=transport, base_url="http://unix") as client:
            r = client.request("GET", "/status", json=[])
            assert r.status_code == 200
            assert r.json()["status"] == "ok"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
