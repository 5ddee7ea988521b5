"""Smoke tests of the real HTCondor pool (ci/services/htcondor.sh) through the host-side bindings.

Each job takes 2-9 s on a warm pool (NEGOTIATOR_INTERVAL = 2, measured), so there are few of them.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import htcondor2
import pytest

from servicekit import Service
from servicekit._service import REPO
from servicekit.containers import exec_argv
from servicekit.htcondor import condor_arguments, run_as_submit_user, wait_for_job

pytestmark = pytest.mark.htcondor
log = logging.getLogger(__name__)


@pytest.fixture
def schedd(htcondor: Service, monkeypatch: pytest.MonkeyPatch) -> Any:
    # The bindings read CONDOR_CONFIG when imported; reload so they see this pool's settings.
    monkeypatch.setenv("CONDOR_CONFIG", htcondor["CONDOR_CONFIG"])
    htcondor2.reload_config()
    return htcondor2.Schedd(htcondor2.Collector().locate(htcondor2.DaemonType.Schedd))


def _description(workdir: Path, argv: list[str], **extra: str) -> Any:
    return htcondor2.Submit(
        {
            "executable": argv[0],
            "arguments": condor_arguments(argv[1:]),
            "initialdir": str(workdir),
            "output": "job.out",
            "error": "job.err",
            "log": "job.log",
            # YES, not IF_NEEDED: the job must run in its own scratch dir and send files back,
            # as on a site without a shared filesystem.
            "should_transfer_files": "YES",
            "when_to_transfer_output": "ON_EXIT",
            **extra,
        }
    )


def test_job_output_file_comes_back(htcondor: Service, schedd: Any, shared_tmp: Path) -> None:
    nonce = uuid.uuid4().hex
    script = f'echo {nonce} "$(id -un)" > result.txt; pwd'
    t0 = time.monotonic()
    result = schedd.submit(
        _description(shared_tmp, ["/bin/sh", "-c", script], transfer_output_files="result.txt")
    )
    ad = wait_for_job(schedd, result.cluster())
    log.info("htcondor job %s done %.1f s after submit", result.cluster(), time.monotonic() - t0)

    assert ad["ExitCode"] == 0
    assert ad["Owner"] == htcondor["HTCONDOR_SUBMIT_USER"]
    assert (shared_tmp / "result.txt").read_text() == f"{nonce} flashci\n"
    # It ran in the starter's scratch dir, so result.txt really came back by file transfer.
    cwd = (shared_tmp / "job.out").read_text().strip()
    assert cwd.startswith("/")
    assert cwd != str(shared_tmp)


def test_failing_job_reports_exit_code(schedd: Any, shared_tmp: Path) -> None:
    result = schedd.submit(_description(shared_tmp, ["/bin/sh", "-c", "echo broken >&2; exit 3"]))
    ad = wait_for_job(schedd, result.cluster())

    assert ad["ExitCode"] == 3
    assert ad["ExitBySignal"] is False
    assert (shared_tmp / "job.err").read_text() == "broken\n"


def test_container_runs_inside_job(schedd: Any, shared_tmp: Path) -> None:
    # bwrap needs a new user namespace, which the kernel grants only because condor_master was
    # started with pivot_root, not chroot (reference §3). The container is the job's own root
    # filesystem, bound read-only.
    nonce = uuid.uuid4().hex
    inner = f"echo {nonce} $(readlink /proc/self/ns/user); touch /probe 2>&1; true"
    script = (
        "echo outer $(readlink /proc/self/ns/user); "
        "/usr/bin/bwrap --ro-bind / / --proc /proc --dev /dev --unshare-all --tmpfs /tmp "
        f"/bin/sh -c '{inner}'"
    )
    result = schedd.submit(_description(shared_tmp, ["/bin/sh", "-c", script]))
    ad = wait_for_job(schedd, result.cluster())

    assert ad["ExitCode"] == 0, (shared_tmp / "job.err").read_text()
    outer, inside, touched = (shared_tmp / "job.out").read_text().splitlines()
    outer_ns = outer.split()[1]
    assert outer_ns.startswith("user:[")
    assert inside.split()[0] == nonce
    assert inside.split()[1] != outer_ns
    assert "Read-only file system" in touched


def test_submit_user_can_submit_without_root(htcondor: Service, shared_tmp: Path) -> None:
    # The alternative to submitting as root: the client code itself runs as flashci.
    code = f"""
import json, os, htcondor2
from servicekit.htcondor import condor_arguments, wait_for_job
schedd = htcondor2.Schedd(htcondor2.Collector().locate(htcondor2.DaemonType.Schedd))
result = schedd.submit(htcondor2.Submit({{
    "executable": "/bin/sh", "arguments": condor_arguments(["-c", "id -u"]),
    "initialdir": {str(shared_tmp)!r}, "output": "job.out", "error": "job.err", "log": "job.log",
    "should_transfer_files": "YES", "when_to_transfer_output": "ON_EXIT"}}))
ad = wait_for_job(schedd, result.cluster())
print(json.dumps({{"uid": os.getuid(), "exit": ad["ExitCode"], "owner": ad["Owner"]}}))
"""
    proc = run_as_submit_user(htcondor, code, env={"PYTHONPATH": str(REPO / "tests")})

    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"uid": 2000, "exit": 0, "owner": "flashci"}
    assert (shared_tmp / "job.out").read_text() == "2000\n"


@pytest.mark.parametrize("tokens", ["none", "owned-by-another-user"])
def test_submit_without_usable_token_is_refused(
    htcondor: Service, tokens: str, tmp_path: Path
) -> None:
    # Authentication is really enforced: root without a token file of its own cannot submit,
    # not even with flashci's file (a client only reads token files owned by its own uid).
    token_dir = tmp_path if tokens == "none" else Path(htcondor["HTCONDOR_TOKENS"]) / "flashci"
    code = """
import htcondor2
schedd = htcondor2.Schedd(htcondor2.Collector().locate(htcondor2.DaemonType.Schedd))
schedd.submit(htcondor2.Submit({"executable": "/bin/true"}))
"""
    env = {
        **os.environ,
        "CONDOR_CONFIG": htcondor["CONDOR_CONFIG"],
        "_CONDOR_SEC_TOKEN_DIRECTORY": str(token_dir),
    }
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert proc.returncode != 0
    assert "Failed to authenticate using IDTOKENS" in proc.stderr


@pytest.mark.apptainer
def test_apptainer_runs_inside_job(apptainer: Service, schedd: Any, shared_tmp: Path) -> None:
    # The Apptainer wrapper and the SIF live under /var/cache/flashlink-ci, which the pool's root
    # mounts read-only; the job (as flashci, in HTCondor's scratch dir) runs the test image.
    nonce = uuid.uuid4().hex
    argv = exec_argv(apptainer, ["/bin/sh", "-c", f"echo {nonce} $(id -un) > out.txt; ls /"])
    result = schedd.submit(
        _description(
            shared_tmp,
            argv,
            transfer_output_files="out.txt",
            environment='"PATH=/usr/local/bin:/usr/bin:/bin"',
        )
    )
    ad = wait_for_job(schedd, result.cluster(), timeout=120)

    assert ad["ExitCode"] == 0, (shared_tmp / "job.err").read_text()
    assert (shared_tmp / "out.txt").read_text() == f"{nonce} flashci\n"
    # The listing is the busybox image's root, not the trixie root the job started in.
    listing = (shared_tmp / "job.out").read_text().split()
    assert "entrypoint.sh" in listing


@pytest.mark.podman
def test_rootless_podman_runs_inside_job(podman: Service, schedd: Any, shared_tmp: Path) -> None:
    # The pool's root has its own podman (trixie, runc); the job imports the test image from a
    # tarball it receives by file transfer and runs it rootless as the submit user.
    subprocess.run(
        ["tar", "-C", podman["TEST_IMAGE_DIR"], "-cf", str(shared_tmp / "image.tar"), "."],
        check=True,
    )
    nonce = uuid.uuid4().hex
    script = (
        "export PODMAN_IGNORE_CGROUPSV1_WARNING=1; "
        "podman import -q image.tar localhost/flashlink-test:job >/dev/null && "
        "podman run --rm --network=none localhost/flashlink-test:job "
        f"/bin/sh -c 'echo {nonce} > /proof; cat /proof; id -u; ls /'"
    )
    result = schedd.submit(
        _description(
            shared_tmp,
            ["/bin/sh", "-c", script],
            transfer_input_files="image.tar",
            environment='"PATH=/usr/local/bin:/usr/bin:/bin"',
        )
    )
    ad = wait_for_job(schedd, result.cluster(), timeout=120)

    assert ad["ExitCode"] == 0, (shared_tmp / "job.err").read_text()
    out = (shared_tmp / "job.out").read_text().split()
    # root inside the container (mapped to flashci outside), in the busybox image's root.
    assert out[:2] == [nonce, "0"]
    assert "entrypoint.sh" in out
