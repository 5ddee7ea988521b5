"""Issue 5 end to end: Pods through the plugin's HTTP API to the real Slurm and HTCondor.

Each Pod runs the test image under Apptainer (or Podman, chosen per site) inside a batch job
of the CI cluster or pool; the tests read what the virtual kubelet would (/status, /getLogs)
while the job is pending, running and after it ended, cancel with /delete, kill and restart the
plugin mid-job, let the scheduler end a pod at its time limit, stop slurmctld under a running, a
pending and a new pod, and stop the schedd under an idle and under a running pod.
"""

from __future__ import annotations

import json
import pwd
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flashlink.backends._htcondor_submit import SCRIPT
from plugin.sites_support import (
    SitePlugin,
    backend_table,
    in_pool,
    scontrol,
    start_site_plugin,
    start_slurmctld,
    stop_slurmctld,
    sync_pod,
    waits_for,
)
from plugin.support import IMAGE, create_request, state_of, vk_phase
from servicekit import Service

SITES = [
    pytest.param("slurm", marks=[pytest.mark.slurm, pytest.mark.apptainer], id="slurm"),
    pytest.param("htcondor", marks=[pytest.mark.htcondor, pytest.mark.apptainer], id="htcondor"),
]
# HTCondor starts a job 2-9 s after submission (negotiation), Slurm in ~1 s; Apptainer adds ~1 s
TIMEOUT = 120
_SUBMIT = "htcondor-job.vk.io/submit"


@pytest.fixture(params=SITES)
def site(
    request: pytest.FixtureRequest, apptainer: Service, tmp_path: Path, shared_tmp: Path
) -> Iterator[SitePlugin]:
    svc = request.getfixturevalue(request.param)
    assert isinstance(svc, Service)
    running = start_site_plugin(svc, apptainer, tmp_path, shared_tmp)
    try:
        yield running
    finally:
        running.close()


def _create(site: SitePlugin, p: dict[str, Any]) -> str:
    r = site.create(create_request(p))
    assert r.status_code == 200, f"{r.status_code} {r.text}\n{site.process.output()}"
    jid: str = r.json()["PodJID"]
    return jid


def _terminated(status: dict[str, Any], name: str) -> dict[str, Any]:
    state = state_of(status, name)
    assert "terminated" in state, status
    term: dict[str, Any] = state["terminated"]
    return term


def _wait_logs(site: SitePlugin, p: dict[str, Any], expected: str) -> None:
    deadline = time.monotonic() + 30
    while (logs := site.client.logs(p, "main").text) != expected:
        assert time.monotonic() < deadline, logs
        time.sleep(0.2)


def _create_once_recovered(site: SitePlugin, pod: dict[str, Any]) -> None:
    """Send ``/create`` again every second while the site answers 503, as interLink retries,
    until it is accepted (within 90 s of the scheduler's restart)."""
    deadline = time.monotonic() + 90
    while (r := site.create(create_request(pod))).status_code == 503:
        assert time.monotonic() < deadline, r.text
        time.sleep(1)
    assert r.status_code == 200, r.text


def _running(s: dict[str, Any]) -> bool:
    return "running" in state_of(s, "main")


def test_pods_run_in_containers_inside_batch_jobs(site: SitePlugin) -> None:
    sync = site.sync
    ok = sync_pod(1, "ok", sync, waits_for(sync, "go", "start", "end"), init="echo prepared")
    bad = sync_pod(2, "bad", sync, "echo oops >&2; exit 3")
    init_fails = sync_pod(3, "init-fails", sync, "echo never", init="echo no; exit 2")
    late = sync_pod(4, "late", sync, "echo slow; sleep 30", activeDeadlineSeconds=4)
    pods = [ok, bad, init_fails, late]
    jids = [_create(site, p) for p in pods]
    assert len(set(jids)) == 4

    first = site.client.status(ok)
    assert first is not None
    assert vk_phase(first) == "Pending", first  # queued, not yet started
    assert "waiting" in state_of(first, "main")

    running = site.client.wait(ok, _running, timeout=TIMEOUT)
    assert running["JID"] == jids[0]
    assert _terminated(running, "prepare")["exitCode"] == 0
    _wait_logs(site, ok, "start\n")  # logs while it runs
    assert site.client.logs(ok, "prepare").text == "prepared\n"

    (sync / "go").touch()
    done = {p["metadata"]["name"]: site.client.finished(p, timeout=TIMEOUT) for p in pods}
    assert vk_phase(done["ok"]) == "Succeeded"
    assert site.client.logs(ok, "main").text == "start\nend\n"
    assert "T" in site.client.logs(ok, "main", Timestamps=True).text.split(" ", 1)[0]

    assert vk_phase(done["bad"]) == "Failed"
    assert (_terminated(done["bad"], "main")["exitCode"]) == 3
    assert site.client.logs(bad, "main").text == "oops\n"

    assert vk_phase(done["init-fails"]) == "Failed"
    assert _terminated(done["init-fails"], "prepare")["exitCode"] == 2
    assert _terminated(done["init-fails"], "main")["exitCode"] != 0  # never started
    assert site.client.logs(init_fails, "main").text == ""

    assert vk_phase(done["late"]) == "Failed"
    assert _terminated(done["late"], "main")["reason"] == "DeadlineExceeded"
    assert site.client.logs(late, "main").text == "slow\n"

    answer = site.client.status_raw(pods).json()
    assert [s["JID"] for s in answer] == jids  # one job per pod, each reported once


def test_delete_cancels_a_running_pod_and_its_job(site: SitePlugin) -> None:
    p = sync_pod(10, "cancelled", site.sync, "echo c; sleep 600")
    _create(site, p)
    site.client.wait(p, _running, timeout=TIMEOUT)
    _wait_logs(site, p, "c\n")
    assert site.client.delete(p).status_code == 200
    status = site.client.finished(p, timeout=TIMEOUT)
    assert vk_phase(status) == "Failed"
    assert _terminated(status, "main")["reason"] in ("Terminated", "Cancelled", "Removed"), status
    assert site.client.logs(p, "main").text == "c\n"
    assert site.client.delete(p).status_code == 200  # again: fine


def test_a_plugin_killed_mid_job_adopts_it_and_reports_it_once(site: SitePlugin) -> None:
    p = sync_pod(20, "survivor", site.sync, waits_for(site.sync, "go-r", "start", "end"))
    jid = _create(site, p)
    site.client.wait(p, _running, timeout=TIMEOUT)

    site.restart()
    status = site.client.wait(p, _running, timeout=60)
    assert status["JID"] == jid  # the same job, adopted
    retry = site.create(create_request(p))  # interLink retrying after the restart
    assert (retry.status_code, retry.json()["PodJID"]) == (200, jid)

    (site.sync / "go-r").touch()
    status = site.client.finished(p, timeout=TIMEOUT)
    assert vk_phase(status) == "Succeeded", status
    assert site.client.logs(p, "main").text == "start\nend\n"  # ran once, not twice
    assert len(site.client.status_raw([p]).json()) == 1


@pytest.mark.htcondor
@pytest.mark.apptainer
def test_a_held_htcondor_job_shows_its_hold_reason_until_deleted(
    htcondor: Service, apptainer: Service, tmp_path: Path, shared_tmp: Path
) -> None:
    site = start_site_plugin(htcondor, apptainer, tmp_path, shared_tmp)
    try:
        p = sync_pod(30, "held", site.sync, "echo never")
        _create(site, p)
        # the input transfer starts 2-9 s later and fails: a real hold (HoldReasonCode 13)
        (site.jobs_dir / p["metadata"]["uid"] / SCRIPT).unlink()
        status = site.client.wait(
            p, lambda s: state_of(s, "main").get("waiting", {}).get("reason") == "Held", TIMEOUT
        )
        assert vk_phase(status) == "Pending"
        message = state_of(status, "main")["waiting"]["message"]
        assert "HoldReasonCode 13" in message, message
        assert SCRIPT in message

        assert site.client.delete(p).status_code == 200
        status = site.client.finished(p, timeout=TIMEOUT)
        assert vk_phase(status) == "Failed"
    finally:
        site.close()


@pytest.mark.slurm
@pytest.mark.apptainer
def test_slurmctld_down_gives_503_and_waiting_reasons_and_nothing_is_lost(
    slurm: Service, apptainer: Service, tmp_path: Path, shared_tmp: Path
) -> None:
    site = start_site_plugin(slurm, apptainer, tmp_path, shared_tmp, create_timeout=40)
    sync = site.sync
    stopped = False
    try:
        running = sync_pod(40, "running", sync, waits_for(sync, "go", "start", "end"))
        pending = sync_pod(
            41,
            "pending",
            sync,
            "echo later",
            annotations={"slurm-job.vk.io/flags": "--begin=now+600"},
        )
        pending_jid = _create(site, pending)
        _create(site, running)
        site.client.wait(running, _running, timeout=TIMEOUT)
        site.client.wait(
            pending,
            lambda s: state_of(s, "main").get("waiting", {}).get("reason") == "BeginTime",
            timeout=60,
        )

        stop_slurmctld(slurm)
        stopped = True
        status = site.client.wait(
            pending,
            lambda s: state_of(s, "main").get("waiting", {}).get("reason") == "SiteUnavailable",
            timeout=60,
        )
        assert "slurm" in state_of(status, "main")["waiting"]["message"]
        assert _running(site.client.status(running) or {})  # a running pod keeps its state
        new = sync_pod(42, "new", sync, "echo new")
        r = site.create(create_request(new))
        assert r.status_code == 503, r.text
        assert "slurm" in r.text.lower() or "retry" in r.text
        (sync / "go").touch()  # running ends while slurmctld is away

        start_slurmctld(slurm)
        stopped = False
        _create(site, new)  # interLink retries the create: now accepted
        scontrol(slurm, "update", f"JobId={pending_jid}", "StartTime=now")
        done = {
            p["metadata"]["name"]: site.client.finished(p, TIMEOUT) for p in (running, pending, new)
        }
        assert {n: vk_phase(s) for n, s in done.items()} == dict.fromkeys(done, "Succeeded")
        assert site.client.logs(running, "main").text == "start\nend\n"
        assert site.client.logs(pending, "main").text == "later\n"
        assert site.client.logs(new, "main").text == "new\n"
        answer = site.client.status_raw([running, pending, new]).json()
        assert len(answer) == 3
    finally:
        if stopped:
            start_slurmctld(slurm)
        site.close()


@pytest.mark.htcondor
@pytest.mark.apptainer
def test_a_stopped_schedd_gives_503_and_waiting_reasons_and_nothing_is_lost(
    htcondor: Service, apptainer: Service, tmp_path: Path, shared_tmp: Path
) -> None:
    site = start_site_plugin(htcondor, apptainer, tmp_path, shared_tmp, create_timeout=40)
    stopped = False
    try:
        idle = sync_pod(
            50, "idle", site.sync, "echo never", annotations={_SUBMIT: "requirements = false"}
        )
        idle_jid = _create(site, idle)
        site.client.wait(
            idle, lambda s: state_of(s, "main").get("waiting", {}).get("reason") == "Idle", 60
        )

        in_pool(htcondor, "condor_off", "-daemon", "schedd")
        stopped = True
        status = site.client.wait(
            idle,
            lambda s: state_of(s, "main").get("waiting", {}).get("reason") == "SiteUnavailable",
            timeout=90,
        )
        assert state_of(status, "main")["waiting"]["message"].startswith("site htcondor: ")
        new = sync_pod(51, "new", site.sync, "echo new")
        r = site.create(create_request(new))
        assert r.status_code == 503, r.text

        in_pool(htcondor, "condor_on", "-daemon", "schedd")
        stopped = False
        _create_once_recovered(site, new)
        assert vk_phase(site.client.finished(new, TIMEOUT)) == "Succeeded"
        assert site.client.logs(new, "main").text == "new\n"
        status = site.client.wait(
            idle, lambda s: state_of(s, "main").get("waiting", {}).get("reason") == "Idle", 60
        )
        assert status["JID"] == idle_jid  # the same job, neither lost nor submitted again
        assert site.client.delete(idle).status_code == 200
        assert vk_phase(site.client.finished(idle, TIMEOUT)) == "Failed"
    finally:
        if stopped:
            in_pool(htcondor, "condor_on", "-daemon", "schedd")
        site.close()


# Podman prints pull progress and warnings (cgroups v1 deprecated, "/" not a shared mount) on
# the stderr it shares with the container: without these flags they land in the pod's log.
_QUIET_PODMAN = ["--quiet", "--log-level=error"]
# (activeDeadlineSeconds, how long the container sleeps). Slurm's smallest --time is 1 minute
# and slurmctld checks time limits every 30 s: a job of --time=1 is killed 60-90 s after it
# started (KillWait 5 s on the test cluster). On HTCondor the plugin holds the job at its
# first poll past the deadline (0.5 s here), the shadow's periodic_hold ~6 s after it. The
# pod must end before its container could have ended by itself, i.e. within the sleep counted
# from /create: a deadline left to the container's own end fails the test whatever the
# timing, and both limits have more than 50 s to spare.
_OVERRUN = {"slurm": (60, 150), "htcondor": (5, 120)}


def _overrun_script(sync: Path, seconds: int) -> str:
    """SIGTERM ignored, then ``seconds`` of sleep, cut short by the file ``sync/release``:
    HTCondor grants a held job's processes their vacate time (10 minutes), so without it the
    container would hold a slot of the pool for the tests that follow."""
    return (
        f"trap '' TERM; echo up; i=0; while [ ! -e {sync / 'release'} ] && "
        f"[ $i -lt {seconds * 5} ]; do sleep 0.2; i=$((i + 1)); done"
    )


_BOTH = [pytest.mark.podman, pytest.mark.apptainer]
TWO_RUNTIME_SITES = [
    pytest.param("slurm", marks=[pytest.mark.slurm, *_BOTH], id="slurm"),
    pytest.param("htcondor", marks=[pytest.mark.htcondor, *_BOTH], id="htcondor"),
]


def _podman_render(site: str, podman: Service, shared: Path) -> dict[str, Any]:
    """``[sites.NAME.render]``: Podman on this site, while ``[render]`` says Apptainer."""
    if site == "slurm":
        # jobs run on this host as the CI user, whose store holds the test image
        executable, image = podman["PODMAN"], podman["TEST_IMAGE_PODMAN"]
    else:
        # jobs run in the pool's own root (trixie's podman 5.4), whose store is not the host's:
        # the image comes as an OCI archive on the shared filesystem (0.7 s per container)
        archive = shared / "test-image.oci.tar"
        subprocess.run(
            [podman["PODMAN"], "save", "-q", "--format", "oci-archive", "-o", str(archive),
             podman["TEST_IMAGE_PODMAN"]],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        archive.chmod(0o644)
        executable, image = "podman", f"oci-archive:{archive}"
    return {
        "runtime": "podman",
        "podman": {"executable": executable, "extra_flags": _QUIET_PODMAN},
        "images": {"overrides": {IMAGE: image}},
    }


@pytest.fixture(params=TWO_RUNTIME_SITES)
def two_runtimes(
    request: pytest.FixtureRequest,
    apptainer: Service,
    podman: Service,
    tmp_path: Path,
    shared_tmp: Path,
) -> Iterator[SitePlugin]:
    """One scheduler behind two sites: NAME with ``[render]``'s Apptainer, NAME-podman with
    Podman chosen in its own ``[sites.NAME-podman.render]``; no time margin on either."""
    svc = request.getfixturevalue(request.param)
    assert isinstance(svc, Service)
    running = start_site_plugin(
        svc,
        apptainer,
        tmp_path,
        shared_tmp,
        renders={f"{svc.name}-podman": _podman_render(svc.name, podman, shared_tmp)},
        # the scheduler's limit is the pod's deadline (Slurm: --time=1)
        backend={"walltime_margin_seconds": 0},
    )
    try:
        yield running
    finally:
        running.close()


def _on_site(p: dict[str, Any], site: str) -> dict[str, Any]:
    p["spec"]["tolerations"].append(
        {"key": "pool.vk.io", "operator": "Equal", "value": site, "effect": "NoSchedule"}
    )
    return p


def test_podman_pods_and_a_time_limit_inside_batch_jobs(two_runtimes: SitePlugin) -> None:
    """Podman, chosen per site, runs pods as the job user while, beside them, a pod that
    ignores its deadline is ended by the scheduler's limit (Slurm TIMEOUT; on HTCondor the
    plugin's own deadline hold): the one slow part (60-90 s on Slurm) overlaps the rest."""
    site, name = two_runtimes, two_runtimes.name
    sync = site.sync
    deadline, sleep = _OVERRUN[name]
    # TERM ignored and a long grace period: the job script's own deadline cannot end it
    overrun = sync_pod(
        60,
        "overrun",
        sync,
        _overrun_script(sync, sleep),
        activeDeadlineSeconds=deadline,
        terminationGracePeriodSeconds=600,
    )
    created = datetime.now(UTC).replace(microsecond=0)
    init = f"id -u; touch {sync / 'made-by-init'}"
    ok = sync_pod(61, "ok", sync, waits_for(sync, "go", "start", "end"), init=init)
    bad = sync_pod(62, "bad", sync, "echo oops >&2; exit 3")
    overrun_jid = _create(site, overrun)
    for p in (ok, bad):
        _create(site, _on_site(p, f"{name}-podman"))

    site.client.wait(ok, _running, timeout=TIMEOUT)
    _wait_logs(site, ok, "start\n")  # live, while the container runs
    # root in the container's user namespace, the unprivileged job user outside it
    assert site.client.logs(ok, "prepare").text == "0\n"
    job_user = pwd.getpwnam(backend_table(site.site)["job_user"])
    assert (sync / "made-by-init").stat().st_uid == job_user.pw_uid
    (sync / "go").touch()
    done = {p["metadata"]["name"]: site.client.finished(p, TIMEOUT) for p in (ok, bad)}
    assert vk_phase(done["ok"]) == "Succeeded", done["ok"]
    assert site.client.logs(ok, "main").text == "start\nend\n"
    assert vk_phase(done["bad"]) == "Failed"
    assert _terminated(done["bad"], "main")["exitCode"] == 3
    assert site.client.logs(bad, "main").text == "oops\n"

    try:
        status = site.client.finished(overrun, timeout=150)
    finally:
        (sync / "release").touch()
    assert vk_phase(status) == "Failed", json.dumps(status, indent=1)
    term = _terminated(status, "main")
    assert term["reason"] == "DeadlineExceeded", status
    # ended by the scheduler or the plugin, not by the container running out of sleep
    ended = datetime.fromisoformat(term["finishedAt"])
    assert ended < created + timedelta(seconds=sleep), (created, status)
    if name == "slurm":
        # the pod may read Failed from its container's record (the job script's own
        # DeadlineExceeded, exit 141 or 137 once Slurm signals the job) while slurmctld still
        # completes the job: measured, JobState=COMPLETING Reason=TimeLimit at that moment
        assert "JobState=TIMEOUT" in _slurm_job_ended(site, overrun_jid)
    else:
        # held by the plugin (HoldReasonCode 1) or, had it been slower, the shadow (3)
        assert re.search(r"HoldReasonCode [13], subcode 4747", term.get("message", "")), status
    # on HTCondor the log comes back in the snapshots the held job still pushes
    _wait_logs(site, overrun, "up\n")


def _slurm_job_ended(site: SitePlugin, jid: str) -> str:
    """``scontrol show job`` once the job no longer runs or completes."""
    deadline = time.monotonic() + 60
    while re.search(
        r"JobState=(RUNNING|COMPLETING)", out := scontrol(site.site, "show", "job", jid)
    ):
        assert time.monotonic() < deadline, out
        time.sleep(0.5)
    return out


def _system_site(site: SitePlugin) -> dict[str, Any]:
    r = site.client.http.get("/system-info")
    assert r.status_code == 200, r.text
    info: dict[str, Any] = r.json()["sites"][site.name]
    return info


@pytest.mark.htcondor
@pytest.mark.apptainer
def test_the_schedd_stopped_under_a_running_pod_which_ends_meanwhile(
    htcondor: Service, apptainer: Service, tmp_path: Path, shared_tmp: Path
) -> None:
    """``condor_off -fast``: the schedd goes at once and its running job stays on the execute
    node (job lease, 40 min by default), which reconnects when the schedd is back (measured:
    the job stayed Busy on its slot all along). The pod ends while the schedd is away."""
    site = start_site_plugin(htcondor, apptainer, tmp_path, shared_tmp, create_timeout=40)
    sync = site.sync
    stopped = False
    try:
        p = sync_pod(56, "through", sync, waits_for(sync, "go-o", "start", "end"))
        jid = _create(site, p)
        site.client.wait(p, _running, timeout=TIMEOUT)
        _wait_logs(site, p, "start\n")

        in_pool(htcondor, "condor_off", "-fast", "-daemon", "schedd")
        stopped = True
        new = sync_pod(57, "new-o", sync, "echo new")
        r = site.create(create_request(new))
        assert r.status_code == 503, r.text
        # HTCondor's own answer: "the collector advertises no schedd (is it down?)", or, from
        # a schedd still shutting down, "Failed to connect to schedd ... SECMAN:2007" (seen once)
        assert "schedd" in r.text, r.text
        deadline = time.monotonic() + 30
        while (info := _system_site(site))["reachable"]:
            assert time.monotonic() < deadline, info
            time.sleep(0.2)
        assert "schedd" in info["error"], info
        assert _running(site.client.status(p) or {})  # a running pod keeps its state
        (sync / "go-o").touch()  # it ends while the schedd is away
        time.sleep(3)

        in_pool(htcondor, "condor_on", "-daemon", "schedd")
        stopped = False
        _create_once_recovered(site, new)
        status = site.client.finished(p, TIMEOUT)
        assert vk_phase(status) == "Succeeded", status
        assert status["JID"] == jid
        assert site.client.logs(p, "main").text == "start\nend\n"  # ran once, all of it
        assert vk_phase(site.client.finished(new, TIMEOUT)) == "Succeeded"
        assert site.client.logs(new, "main").text == "new\n"
        assert len(site.client.status_raw([p, new]).json()) == 2
        assert _system_site(site)["reachable"]
    finally:
        if stopped:
            in_pool(htcondor, "condor_on", "-daemon", "schedd")
        site.close()
