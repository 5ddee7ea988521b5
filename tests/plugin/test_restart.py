"""C17 and more: the plugin is killed (SIGKILL) mid-job and restarted; nothing is lost or doubled.

The jobs run in sessions of their own, so they outlive the plugin; the restarted plugin finds
them again in the local backend's records, reports each pod once, does not submit a retried
/create again, and still cancels on /delete. A job that finished while no plugin ran is
reported from the record its script wrote.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from flashlink.backends import BatchJob
from flashlink.jobscript import render
from flashlink.kube import parse_create_request
from flashlink.plugin import Plugin, parse_plugin_config
from flashlink.plugin.status import PodInfo, phase_of, status_json, waiting_status
from flashlink.plugin.submitter import job_to_dict
from plugin.conftest import drain, plugin_config, runtime_params, start_plugin
from plugin.support import (
    PluginClient,
    PluginProcess,
    container,
    create_request,
    free_port,
    pod,
    state_of,
    uid,
    vk_phase,
)
from servicekit import Service


def _waits_for(sync: Path, name: str, first: str, last: str) -> str:
    return f"echo {first}; while [ ! -e {sync / name} ]; do sleep 0.1; done; echo {last}"


def _sync_pod(n: int, name: str, sync: Path, script: str) -> dict[str, Any]:
    return pod(
        uid(n, 0x17),
        name,
        [container("main", script, volumeMounts=[{"name": "sync", "mountPath": str(sync)}])],
        volumes=[{"name": "sync", "hostPath": {"path": str(sync), "type": "Directory"}}],
    )


@pytest.fixture(params=runtime_params())
def service(request: pytest.FixtureRequest) -> Service:
    svc = request.getfixturevalue(request.param)
    assert isinstance(svc, Service)
    return svc


def test_a_killed_plugin_restarts_without_losing_or_doubling_jobs(
    service: Service, tmp_path: Path
) -> None:
    first, state_dir, sync = start_plugin(tmp_path, service)
    second: PluginProcess | None = None
    client = PluginClient(first.url)
    try:
        a = _sync_pod(1, "survivor", sync, _waits_for(sync, "go-a", "start", "finished"))
        b = _sync_pod(2, "finishes-alone", sync, _waits_for(sync, "go-b", "b-start", "b-done"))
        c = _sync_pod(3, "deleted-later", sync, "echo c; sleep 600")
        jids = {}
        for p in (a, b, c):
            r = client.create(create_request(p))
            assert r.status_code == 200, r.text
            jids[p["metadata"]["uid"]] = r.json()["PodJID"]
        for p in (a, b, c):
            client.wait(p, lambda s: "running" in state_of(s, "main"))

        first.stop(signal.SIGKILL)  # no shutdown at all
        client.close()
        (sync / "go-b").touch()  # b ends while no plugin is running
        pod_record = state_dir / "jobs" / "local" / uid(2, 0x17) / "pod.json"
        deadline = time.monotonic() + 30
        while '"Succeeded"' not in (pod_record.read_text() if pod_record.exists() else ""):
            assert time.monotonic() < deadline
            time.sleep(0.1)

        second = PluginProcess(first.config, free_port(), tmp_path / "second.log")
        second.start()
        client = PluginClient(second.url)
        status = client.wait(a, lambda s: "running" in state_of(s, "main"))
        assert status["JID"] == jids[uid(1, 0x17)]  # adopted, the same job
        b_status = client.finished(b)
        assert vk_phase(b_status) == "Succeeded"
        assert client.logs(b, "main").text == "b-start\nb-done\n"

        retry = client.create(create_request(a))  # interLink retrying after the restart
        assert retry.status_code == 200
        assert retry.json()["PodJID"] == jids[uid(1, 0x17)]

        (sync / "go-a").touch()
        a_status = client.finished(a)
        assert vk_phase(a_status) == "Succeeded"
        assert client.logs(a, "main").text == "start\nfinished\n"  # ran once, not twice

        assert client.delete(c).status_code == 200  # C17: delete still reaches the job
        c_status = client.finished(c, timeout=30)
        assert state_of(c_status, "main")["terminated"]["reason"] == "Terminated"

        answer = client.status_raw([a, b, c]).json()
        assert [s["UID"] for s in answer] == [uid(n, 0x17) for n in (1, 2, 3)]  # once each
        records = [
            json.loads(p.read_text()) for p in (state_dir / "sites/local/jobs").glob("*.json")
        ]
        assert sorted(r["key"] for r in records) == sorted(jids)  # one job per pod
        assert "adopted" in second.output()
    finally:
        client.close()
        first.stop()
        if second is not None:
            second.stop()
        drain(state_dir)


@pytest.mark.podman
def test_submissions_cut_short_by_a_crash_are_completed_once(
    podman: Service, tmp_path: Path
) -> None:
    """The two crash windows of /create: after the store recorded the pod but before the backend
    had it, and after the backend accepted it but before the store knew its id."""
    sync = tmp_path / "sync"
    sync.mkdir()
    config = parse_plugin_config(plugin_config(tmp_path / "state", podman, sync))
    requests = [
        create_request(pod(uid(n, 0x18), f"crashed-{n}", [container("main", f"echo {n}")]))
        for n in (1, 2)
    ]
    crashed = Plugin(config)  # never started: it "crashed" half-way through two creates
    site = crashed.sites["local"]
    for n, body in enumerate(requests, 1):
        request = parse_create_request(body)
        meta = request.pod.metadata
        script = render(request, site.render)
        job = BatchJob(meta.uid, meta.name, script.text, site.jobs_dir / meta.uid, script.resources)
        info = PodInfo(meta.uid, meta.name, meta.namespace, main=[("main", "busybox:1.36")])
        status = waiting_status(info, "Submitting")
        crashed.store.insert(
            uid=meta.uid,
            namespace=meta.namespace,
            name=meta.name,
            site="local",
            job_dir=str(job.job_dir),
            containers={"init": [], "main": [["main", "busybox:1.36"]]},
            phase=phase_of(status),
            status=status_json(status),
            job=job_to_dict(job),
        )
        if n == 2:
            site.backend.submit([job])  # the backend has it; the store never heard back
    crashed.stop()

    restarted = Plugin(config)
    restarted.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            rows = [restarted.store.get(uid(n, 0x18)) for n in (1, 2)]
            if all(r is not None and r.state == "done" for r in rows):
                break
            assert time.monotonic() < deadline, rows
            time.sleep(0.1)
        records = restarted.sites["local"].backend.records()  # type: ignore[attr-defined]
        keys = sorted(r["key"] for r in records.values())
        assert keys == [uid(1, 0x18), uid(2, 0x18)]  # each submitted exactly once
        for n in (1, 2):
            row = restarted.store.get(uid(n, 0x18))
            assert row is not None
            assert row.phase == "Succeeded"
            assert row.job is None  # the script (which may hold Secrets) is not kept
    finally:
        restarted.stop()
        drain(tmp_path / "state")
