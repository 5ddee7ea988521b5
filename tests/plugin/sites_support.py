"""A real plugin process whose one site is the test Slurm cluster or the test HTCondor pool.

The pods run the test image under Apptainer inside the batch jobs. Job directories and the
tests' sync directory live under ``shared_tmp`` (/srv/flashlink-ci): the HTCondor schedd
writes into the job directories and the jobs, run as the unprivileged CI user, read the sync
directory through a hostPath volume.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from plugin.conftest import plugin_config
from plugin.support import PluginClient, PluginProcess, container, free_port, pod, to_toml, uid
from servicekit import Service

RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}}


def backend_table(site: Service) -> dict[str, Any]:
    """``[sites.X.backend]`` for the CI service ``site``: jobs run as its unprivileged user."""
    if site.name == "slurm":
        return {
            "slurm_conf": site["SLURM_CONF"],
            "partition": site["SLURM_PARTITION"],
            "job_user": site["SLURM_SUBMIT_USER"],
            # sbatch retries an absent slurmctld for about MessageTimeout (10 s): the outage
            # test wants the 503 sooner than the default 30 s
            "command_timeout_seconds": 15,
        }
    return {
        "condor_config": site["CONDOR_CONFIG"],
        "token_dir": str(Path(site["HTCONDOR_TOKENS"]) / "root"),
        "job_user": site["HTCONDOR_SUBMIT_USER"],
        # the running containers' records and logs come back only in these snapshots (the
        # smallest interval allowed); without them a pod reads ContainerCreating until it ends
        "transfer_interval_seconds": 5,
    }


@dataclass
class SitePlugin:
    """``flashlink plugin serve`` with one site, its client and its directories."""

    site: Service
    tmp: Path
    process: PluginProcess
    client: PluginClient
    jobs_dir: Path
    sync: Path
    older: list[PluginProcess] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.site.name

    def restart(self, sig: int = signal.SIGKILL) -> None:
        """Kill the plugin (no shutdown at all by default) and start it again, same config."""
        self.process.stop(sig)
        self.client.close()
        self.older.append(self.process)
        self.process = PluginProcess(
            self.process.config, free_port(), self.tmp / f"plugin-{len(self.older)}.log"
        )
        self.process.start()
        self.client = PluginClient(self.process.url)

    def create(self, request: dict[str, Any]) -> httpx.Response:
        """/create, remembering the pod so that ``close`` cancels its job whatever happened."""
        self.created.append(request["pod"])
        return self.client.create(request)

    def close(self) -> None:
        # a failed test must not leave a job waiting for its sync file, holding a slot of the
        # session's cluster (2 CPUs) for the tests after it
        if self.process.proc is not None:
            for p in self.created:
                with contextlib.suppress(httpx.HTTPError):
                    self.client.delete(p)
        self.client.close()
        self.process.stop()


def start_site_plugin(
    site: Service,
    runtime: Service,
    tmp: Path,
    shared: Path,
    *,
    renders: dict[str, dict[str, Any]] | None = None,
    backend: dict[str, Any] | None = None,
    **extra: Any,
) -> SitePlugin:
    """The plugin with ``[render]`` for ``runtime`` and the site ``site.name`` (the default),
    plus one more site of the same scheduler per entry of ``renders``: its name and its
    ``[sites.NAME.render]``. ``backend`` goes over :func:`backend_table` for all of them."""
    sync = shared / "sync"
    sync.mkdir(mode=0o777)
    sync.chmod(0o777)
    jobs_dir = shared / "jobs"
    sites = {
        name: {
            "kind": site.name,
            "jobs_dir": str(jobs_dir),
            "reconcile_interval": 0.5,
            "backend": {**backend_table(site), **(backend or {})},
            "render": render,
        }
        for name, render in {site.name: {}, **(renders or {})}.items()
    }
    config = plugin_config(
        tmp / "state",
        runtime,
        sync,
        sites=sites,
        default_site=site.name,
        **extra,
    )
    path = tmp / "plugin.toml"
    path.write_text(to_toml(config))
    process = PluginProcess(path, free_port(), tmp / "plugin.log")
    process.start()
    return SitePlugin(site, tmp, process, PluginClient(process.url), jobs_dir, sync)


def sync_pod(
    n: int,
    name: str,
    sync: Path,
    script: str,
    *,
    init: str | None = None,
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A pod whose containers see the sync directory (to wait for the test's signal)."""
    mount = [{"name": "sync", "mountPath": str(sync)}]
    inits = (
        [container("prepare", init, volumeMounts=mount, resources=RESOURCES)]
        if init is not None
        else []
    )
    return pod(
        uid(n, 0x5173),
        name,
        [container("main", script, volumeMounts=mount, resources=RESOURCES)],
        init=inits,
        volumes=[{"name": "sync", "hostPath": {"path": str(sync), "type": "Directory"}}],
        annotations=annotations,
        **spec,
    )


def waits_for(sync: Path, name: str, first: str, last: str) -> str:
    """A shell script: print ``first``, wait for the file ``sync/name``, print ``last``."""
    return f"echo {first}; while [ ! -e {sync / name} ]; do sleep 0.2; done; echo {last}"


def slurm_env(slurm: Service) -> dict[str, str]:
    return {**os.environ, "SLURM_CONF": slurm["SLURM_CONF"]}


def stop_slurmctld(slurm: Service) -> None:
    """SIGTERM, as an admin stops it: slurmctld saves its state and exits."""
    pidfile = slurm.rundir / "slurmctld.pid"
    pid = int(pidfile.read_text())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}").exists():
        assert time.monotonic() < deadline, f"slurmctld {pid} did not stop in 60 s"
        time.sleep(0.1)


def start_slurmctld(slurm: Service) -> None:
    """The command ci/services/slurm.sh starts it with; waits until the node is idle again."""
    conf = slurm["SLURM_CONF"]
    env = slurm_env(slurm)
    subprocess.run(["slurmctld", "-f", conf], env=env, check=True, timeout=60)
    deadline = time.monotonic() + 60
    while True:
        r = subprocess.run(
            ["sinfo", "-h", "-o", "%T"],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if r.returncode == 0 and r.stdout.strip():
            return
        assert time.monotonic() < deadline, f"slurmctld did not answer after its restart: {r}"
        time.sleep(0.5)


def scontrol(slurm: Service, *args: str) -> str:
    r = subprocess.run(
        ["scontrol", *args],
        check=False,
        env=slurm_env(slurm),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def in_pool(htcondor: Service, *argv: str) -> str:
    """A condor tool inside the pool's root, as ci/services/htcondor.sh's ``in_pool`` runs it."""
    rundir = htcondor.rundir.resolve()
    master = (rundir / "condor_master.pid").read_text().strip()
    r = subprocess.run(
        [
            "nsenter",
            "-t",
            master,
            "-m",
            "-r",
            "env",
            "-i",
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            f"CONDOR_CONFIG={rundir / 'condor_config'}",
            *argv,
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, f"{argv}: {r.stdout}{r.stderr}"
    return r.stdout
