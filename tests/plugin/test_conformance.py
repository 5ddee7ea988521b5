"""interLink conformance: the requests interLink sends, to a real plugin, with real containers.

Cases C1-C18 of reference/interlink-contract.md section 4 (C17, the restart, is in
test_restart.py). The pods whose outcome is checked only at the end are all created when the
module starts and run side by side; the cases that must watch a pod *while* it runs create
their own, and hold it with a file in a hostPath directory that the test creates when it is done
looking.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from plugin.conftest import Running
from plugin.support import container, create_request, pod, state_of, uid, vk_phase

SECRET_VALUE = 's3cr3t-"quoted" $HOME `x`'
CONFIG_VALUE = 'k: "v" $HOME `x`\n'


def _cases() -> dict[str, tuple[dict[str, Any], Any]]:
    """name -> (pod, create body) of the pods created when the module starts."""
    cases: dict[str, tuple[dict[str, Any], Any]] = {}

    def add(name: str, p: dict[str, Any], body: Any = None) -> None:
        cases[name] = (p, body if body is not None else create_request(p))

    resources = {"requests": {"cpu": "1", "memory": "100Mi"}}
    hello = pod(uid(2), "hello", [container("main", "echo hello; exit 0", resources=resources)])
    add("hello", hello)
    old = pod(uid(3), "hello-array", [container("main", "echo old shape")])
    add("hello-array", old, [create_request(old)])
    fails = pod(
        uid(4), "init-fails", [container("main", "echo never")], init=[container("init1", "exit 3")]
    )
    add("init-fails", fails)
    cfg_volume = {
        "name": "cfg",
        "configMap": {
            "name": "app-cfg",
            "defaultMode": 420,
            "items": [{"key": "app.yaml", "path": "conf/app.yaml", "mode": 256}],
        },
    }
    cfg = pod(
        uid(5),
        "configmap",
        [
            container(
                "main",
                "cat /etc/app/conf/app.yaml; stat -c %a /etc/app/conf/app.yaml; ls /etc/app;"
                " echo ---; cat /app.yaml",
                volumeMounts=[
                    {"name": "cfg", "mountPath": "/etc/app", "readOnly": True},
                    {"name": "cfg", "mountPath": "/app.yaml", "subPath": "conf/app.yaml"},
                ],
            )
        ],
        volumes=[cfg_volume],
    )
    config_map = {
        "metadata": {"name": "app-cfg", "namespace": "default"},
        "data": {"app.yaml": CONFIG_VALUE, "other": "x"},
    }
    add("configmap", cfg, create_request(cfg, config_maps=[config_map]))
    sec = pod(
        uid(6),
        "secret",
        [
            container(
                "main",
                "cat /mnt/sec/password",
                volumeMounts=[{"name": "sec", "mountPath": "/mnt/sec"}],
            )
        ],
        volumes=[{"name": "sec", "secret": {"secretName": "creds"}}],
    )
    secret = {
        "metadata": {"name": "creds", "namespace": "default"},
        "type": "Opaque",
        "data": {"password": base64.b64encode(SECRET_VALUE.encode()).decode()},
    }
    add("secret", sec, create_request(sec, secrets=[secret]))
    sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
    projected = pod(
        uid(7),
        "projected",
        [
            container(
                "main",
                f"cat {sa_dir}/token; echo; cat {sa_dir}/namespace; echo; cat {sa_dir}/ca.crt",
                volumeMounts=[{"name": "kube-api-access-x", "mountPath": sa_dir, "readOnly": True}],
            )
        ],
        volumes=[
            {
                "name": "kube-api-access-x",
                "projected": {
                    "sources": [
                        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                        {
                            "configMap": {
                                "name": "kube-root-ca.crt",
                                "items": [{"key": "ca.crt", "path": "ca.crt"}],
                            }
                        },
                        {
                            "downwardAPI": {
                                "items": [
                                    {
                                        "path": "namespace",
                                        "fieldRef": {"fieldPath": "metadata.namespace"},
                                    }
                                ]
                            }
                        },
                    ]
                },
            }
        ],
    )
    rendered = {
        "metadata": {"name": "kube-api-access-x"},
        "data": {"token": "abc.def.ghi", "ca.crt": "PEM", "namespace": "default"},
    }
    add("projected", projected, create_request(projected, projected=[rendered]))
    shared = pod(
        uid(8),
        "emptydir",
        [
            container(
                "writer",
                "echo hi > /shared/f; sleep 2",
                volumeMounts=[{"name": "work", "mountPath": "/shared"}],
            ),
            container(
                "reader",
                "while [ ! -e /shared/f ]; do sleep 0.1; done; cat /shared/f",
                volumeMounts=[{"name": "work", "mountPath": "/shared"}],
            ),
        ],
        volumes=[{"name": "work", "emptyDir": {}}],
    )
    add("emptydir", shared)
    add(
        "one-fails",
        pod(uid(9), "one-fails", [container("ok", "sleep 1; exit 0"), container("bad", "exit 7")]),
    )
    env = [
        {"name": "A", "value": "1"},
        {"name": "Q", "value": 'a "quoted" $HOME `x`'},
        {"name": "P", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    add(
        "env",
        pod(
            uid(10),
            "env",
            [container("main", 'echo $A; echo "$Q"; echo $P; pwd', env=env, workingDir="/tmp")],
        ),
    )
    limits = {"limits": {"cpu": "2", "memory": "4Gi"}}
    add(
        "resources",
        pod(
            uid(16),
            "resources",
            [container("main", "true", resources=limits)],
            annotations={"slurm-job.vk.io/flags": "--partition=debug"},
        ),
    )
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def created(running: Running) -> dict[str, dict[str, Any]]:
    """Every case's pod created at once (as interLink does when pods are scheduled together)."""
    with ThreadPoolExecutor(8) as pool:
        answers = dict(
            zip(CASES, pool.map(lambda c: running.client.create(c[1]), CASES.values()), strict=True)
        )
    for name, answer in answers.items():
        assert answer.status_code == 200, (name, answer.text)
    return {name: answer.json() for name, answer in answers.items()}


def _finished(running: Running, name: str) -> dict[str, Any]:
    return running.client.finished(CASES[name][0])


def _log(running: Running, name: str, container_name: str = "main", **opts: Any) -> str:
    r = running.client.logs(CASES[name][0], container_name, **opts)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return r.text


def test_c1_ping_answers_resources_and_taints(running: Running) -> None:
    r = running.client.status_raw([])
    assert r.status_code == 200
    ping = r.json()
    assert ping["status"] == "ok"
    assert ping["resources"]["cpu"] == "16"
    assert re.fullmatch(r"\d+Ki", ping["resources"]["memory"])
    assert ping["resources"]["pods"] == "1000"
    assert ping["taints"] == [
        {"key": "virtual-node.interlink/no-schedule", "value": "true", "effect": "NoSchedule"}
    ]


def test_c2_minimal_create_runs_and_reports(
    running: Running, created: dict[str, dict[str, Any]]
) -> None:
    answer = created["hello"]
    assert answer["PodUID"] == uid(2)
    assert answer["PodJID"]
    status = _finished(running, "hello")
    assert (status["name"], status["UID"], status["namespace"]) == ("hello", uid(2), "default")
    assert status["JID"] == answer["PodJID"]
    assert [c["name"] for c in status["containers"]] == ["main"]
    assert status["initContainers"] == []
    terminated = state_of(status, "main")["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", terminated["finishedAt"])
    assert vk_phase(status) == "Succeeded"
    assert _log(running, "hello") == "hello\n"
    # the pre-0.5 body shape (a one-element array) works the same
    assert created["hello-array"]["PodUID"] == uid(3)
    assert vk_phase(_finished(running, "hello-array")) == "Succeeded"
    assert _log(running, "hello-array") == "old shape\n"


def test_create_is_idempotent_on_the_pod_uid(
    running: Running, created: dict[str, dict[str, Any]]
) -> None:
    _, body = CASES["hello"]
    with ThreadPoolExecutor(4) as pool:
        again = list(pool.map(running.client.create, [body] * 4))
    assert {r.status_code for r in again} == {200}
    assert {r.json()["PodJID"] for r in again} == {created["hello"]["PodJID"]}
    keys = [r["key"] for r in running.records()]
    assert keys.count(uid(2)) == 1


def test_c3_init_containers_run_in_order_before_the_mains(running: Running) -> None:
    volume = {"name": "work", "emptyDir": {}}
    mount = [{"name": "work", "mountPath": "/initdata"}]
    p = pod(
        uid(30),
        "init-order",
        [container("main", "cat /initdata/b", volumeMounts=mount)],
        init=[
            container("init1", "sleep 2; echo a > /initdata/a; echo one", volumeMounts=mount),
            container("init2", "cat /initdata/a >> /initdata/b; echo two", volumeMounts=mount),
        ],
        volumes=[volume],
    )
    assert running.client.create(create_request(p)).status_code == 200
    status = running.client.wait(p, lambda s: "running" in state_of(s, "init1"))
    assert "waiting" in state_of(status, "init2")
    assert "waiting" in state_of(status, "main")  # mains wait while an init container runs
    assert vk_phase(status) == "Pending"
    status = running.client.finished(p)
    assert vk_phase(status) == "Succeeded"
    one, two = (state_of(status, n)["terminated"] for n in ("init1", "init2"))
    assert (one["exitCode"], two["exitCode"]) == (0, 0)
    assert two["startedAt"] >= one["finishedAt"]
    assert [c["name"] for c in status["initContainers"]] == ["init1", "init2"]
    assert running.client.logs(p, "main").text == "a\n"
    # C15: an init container's own log
    assert running.client.logs(p, "init1").text == "one\n"
    assert running.client.logs(p, "init2").text == "two\n"


def test_c4_a_failing_init_container_fails_the_pod(running: Running) -> None:
    status = _finished(running, "init-fails")
    assert state_of(status, "init1")["terminated"]["exitCode"] == 3
    main = state_of(status, "main")["terminated"]
    assert main["reason"] == "InitContainerFailed"
    assert main["exitCode"] != 0
    assert vk_phase(status) == "Failed"
    assert _log(running, "init-fails") == ""  # main never ran


def test_c5_config_map_volume_with_items_modes_and_sub_path(running: Running) -> None:
    assert vk_phase(_finished(running, "configmap")) == "Succeeded"
    assert _log(running, "configmap") == f"{CONFIG_VALUE}400\nconf\n---\n{CONFIG_VALUE}"


def test_c6_secret_volume_is_decoded(running: Running) -> None:
    assert vk_phase(_finished(running, "secret")) == "Succeeded"
    # (a last line without a newline gets one: the timestamped log is line by line)
    assert _log(running, "secret") == SECRET_VALUE + "\n"


def test_c7_projected_service_account_volume(running: Running) -> None:
    assert vk_phase(_finished(running, "projected")) == "Succeeded"
    assert _log(running, "projected") == "abc.def.ghi\ndefault\nPEM\n"


def test_c8_empty_dir_shared_by_two_containers(running: Running) -> None:
    status = _finished(running, "emptydir")
    assert vk_phase(status) == "Succeeded"
    assert _log(running, "emptydir", "reader") == "hi\n"


def test_c9_one_failing_container_fails_the_pod(running: Running) -> None:
    status = _finished(running, "one-fails")
    assert state_of(status, "ok")["terminated"]["exitCode"] == 0
    assert state_of(status, "bad")["terminated"]["exitCode"] == 7
    assert vk_phase(status) == "Failed"


def test_c10_env_values_are_data_and_field_refs_resolve(running: Running) -> None:
    assert vk_phase(_finished(running, "env")) == "Succeeded"
    assert _log(running, "env") == '1\na "quoted" $HOME `x`\nenv\n/tmp\n'


def test_c11_unknown_pods_are_omitted(running: Running) -> None:
    unknown = pod(uid(0xDEAD), "ghost", [container("main", "true")])
    r = running.client.status_raw([unknown])
    assert (r.status_code, r.json()) == (200, [])
    known = CASES["hello"][0]
    r = running.client.status_raw([unknown, known, known])
    assert [s["UID"] for s in r.json()] == [uid(2)]


def test_c12_deleting_an_unknown_pod_twice_is_fine(running: Running) -> None:
    unknown = pod(uid(0xBEEF), "ghost", [container("main", "true")])
    assert running.client.delete(unknown).status_code == 200
    assert running.client.delete(unknown).status_code == 200


def test_c13_delete_cancels_a_running_pod(running: Running) -> None:
    p = pod(uid(13), "sleeper", [container("main", "echo up; sleep 600")])
    answer = running.client.create(create_request(p))
    assert answer.status_code == 200
    running.client.wait(p, lambda s: "running" in state_of(s, "main"))
    t0 = time.monotonic()
    assert running.client.delete(p).status_code == 200
    assert running.client.delete(p).status_code == 200  # idempotent
    status = running.client.finished(p, timeout=30)
    assert time.monotonic() - t0 < 20
    main = state_of(status, "main")["terminated"]
    assert main["exitCode"] != 0
    assert main["reason"] == "Terminated"
    # the containers are reported terminated as soon as they are; the job itself (its script
    # cleaning up) ends a moment later, as cancelled
    deadline = time.monotonic() + 20
    while True:
        [record] = [r for r in running.records() if r["key"] == uid(13)]
        if record["status"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert record["status"] == "cancelled"
    assert record["id"] == answer.json()["PodJID"]


def test_c14_logs_while_running_with_every_option(running: Running) -> None:
    go = running.sync_dir / "c14-go"
    script = (
        "i=1; while [ $i -le 100 ]; do echo line $i; i=$((i+1)); done; "
        f"while [ ! -e {go} ]; do sleep 0.1; done; echo end"
    )
    p = pod(
        uid(14),
        "logger",
        [
            container(
                "main", script, volumeMounts=[{"name": "sync", "mountPath": str(running.sync_dir)}]
            )
        ],
        volumes=[
            {"name": "sync", "hostPath": {"path": str(running.sync_dir), "type": "Directory"}}
        ],
    )
    assert running.client.create(create_request(p)).status_code == 200
    deadline = time.monotonic() + 60
    while "line 100\n" not in running.client.logs(p, "main").text:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    every = "".join(f"line {i}\n" for i in range(1, 101))
    assert running.client.logs(p, "main").text == every  # a running container's log
    assert running.client.logs(p, "main", Tail=5).text == "".join(
        f"line {i}\n" for i in range(96, 101)
    )
    assert running.client.logs(p, "main", Bytes=10).text == every[:10]
    stamped = running.client.logs(p, "main", Tail=3, Timestamps=True).text.splitlines()
    assert len(stamped) == 3
    for line, n in zip(stamped, (98, 99, 100), strict=True):
        assert re.fullmatch(rf"\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z line {n}", line), line
    assert running.client.logs(p, "main", SinceSeconds=3600).text == every
    assert running.client.logs(p, "main", SinceTime="2999-01-01T00:00:00Z").text == ""
    previous = running.client.logs(p, "main", Previous=True)
    assert previous.status_code == 400
    assert "previous terminated container" in previous.text
    missing = running.client.logs(p, "nope")
    assert missing.status_code == 404
    assert "main" in missing.text  # names the containers there are
    ghost = pod(uid(0xF00D), "ghost", [container("main", "true")])
    assert running.client.logs(ghost, "main").status_code == 404

    # Follow: the existing lines, then new ones as they come, then the end of the stream
    body = {
        "Namespace": "default",
        "PodUID": uid(14),
        "PodName": "logger",
        "ContainerName": "main",
        "Opts": {"Follow": True, "Tail": 1},
    }
    received: list[str] = []
    opened = threading.Event()
    with running.client.http.stream("GET", "/getLogs", json=body) as stream:
        assert stream.status_code == 200

        def touch_when_streaming() -> None:
            opened.wait(30)
            go.touch()

        toucher = threading.Thread(target=touch_when_streaming)
        toucher.start()
        t0 = time.monotonic()
        for chunk in stream.iter_text():
            received.append(chunk)
            opened.set()
        toucher.join()
    assert "".join(received) == "line 100\nend\n"
    assert time.monotonic() - t0 < 20  # ended with the container, not at a timeout
    assert vk_phase(running.client.finished(p)) == "Succeeded"
    assert running.client.logs(p, "main", Tail=1).text == "end\n"


def test_c16_resources_reach_the_backend(running: Running) -> None:
    assert vk_phase(_finished(running, "resources")) == "Succeeded"
    [record] = [r for r in running.records() if r["key"] == uid(16)]
    assert record["cpu"] == 2.0
    assert record["memory"] == 4 * 1024**3
    gpu = pod(
        uid(161),
        "gpu",
        [container("main", "true", resources={"limits": {"nvidia.com/gpu": "1"}})],
    )
    refused = running.client.create(create_request(gpu))
    assert refused.status_code == 422
    assert "nvidia.com/gpu" in refused.text
    status = running.client.status(gpu)  # reported, not lost: it failed and says why
    assert status is not None
    assert vk_phase(status) == "Failed"
    assert state_of(status, "main")["terminated"]["reason"] == "SubmitFailed"


def test_c18_malformed_pods_are_refused_with_the_field(running: Running) -> None:
    no_containers = pod(uid(18), "empty", [])
    r = running.client.create(create_request(no_containers))
    assert r.status_code == 400
    assert "spec.containers" in r.text
    r = running.client.create({"pod": {"metadata": {"name": "x"}, "spec": {"containers": 3}}})
    assert r.status_code == 400
    assert "pod.spec.containers" in r.text
    r = running.client.http.post("/create", content=b"{not json")
    assert r.status_code == 400
    assert "not JSON" in r.text
    assert running.client.status(no_containers) is None  # refused pods are not tracked
