"""A production offloaded to the real Slurm cluster: the Pods go through the plugin's slurm
site, run as the cluster's unprivileged user under Apptainer with the payload SIF."""

from __future__ import annotations

from pathlib import Path

import pytest

from flashlink.production import (
    EmbeddedPlugin,
    PayloadSettings,
    PluginClient,
    Production,
    parse_request,
    software_binds,
)
from servicekit import Service

IMAGE = "ghcr.io/flashlink/payload:latest"


@pytest.mark.slurm
@pytest.mark.apptainer
@pytest.mark.payload
def test_production_on_slurm(slurm: Service, payload: Service, shared_tmp: Path) -> None:
    import uproot

    out = shared_tmp / "prod"
    out.mkdir(mode=0o1777)
    out.chmod(0o1777)  # the jobs run as the cluster's user, not as the driver's
    request = parse_request(
        {
            "name": "bu2jpsik-slurm",
            "event": {"kind": "gun", "channel": "Bu2JpsiK"},
            "events": 100,
            "events_per_job": 50,
            "simulation": "detailed",
            "output": str(out),
            "site": "hpc",
            "reference": {"events": 0},
            "retries": 0,
            "image": IMAGE,
        }
    )
    _, command, binds = software_binds()
    jobs_dir = shared_tmp / "jobs"
    jobs_dir.mkdir(mode=0o1777)
    jobs_dir.chmod(0o1777)
    sites = {
        "hpc": {
            "kind": "slurm",
            "jobs_dir": str(jobs_dir),
            "backend": {
                "slurm_conf": slurm["SLURM_CONF"],
                "partition": slurm["SLURM_PARTITION"],
                "job_user": slurm["SLURM_SUBMIT_USER"],
            },
        }
    }
    with EmbeddedPlugin(
        shared_tmp / "plugin",
        runtime="apptainer",
        executable=payload.env["APPTAINER"],
        image_overrides={IMAGE: payload.env["PAYLOAD_SIF"]},
        host_paths=[str(out), *binds],
        sites=sites,
    ) as url:
        client = PluginClient(url)
        try:
            production = Production(
                request, client, PayloadSettings(command=command, binds=binds), poll_interval=1
            )
            snap = production.run()
        finally:
            client.close()
    logs = sorted(str(p) for p in out.glob("jobs/*/a1/logs/*.log"))
    assert snap.failed == 0, [Path(p).read_text()[-500:] for p in logs]
    assert snap.done == 2
    with uproot.open(out / "ntuple.root") as f:
        assert f["DecayTree"].num_entries > 20
    owners = {p.stat().st_uid for p in out.glob("jobs/*/a1/ntuple.root")}
    assert owners == {2000}  # written by the cluster's user inside the batch job
