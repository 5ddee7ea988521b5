"""A production offloaded to the real Slurm cluster: the Pods go through the plugin's slurm
site and run as the cluster's unprivileged user under Apptainer with the payload SIF."""

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


def _site(kind: str, service: Service, jobs_dir: Path) -> dict[str, object]:
    # HTCondor is not here: its test pool runs jobs in its own root, which sees the CI work and
    # cache directories but not this installation, so the software bind has nothing to bind;
    # an HTCondor production needs the self-contained image (images/Containerfile.payload).
    backend = {
        "slurm_conf": service["SLURM_CONF"],
        "partition": service["SLURM_PARTITION"],
        "job_user": service["SLURM_SUBMIT_USER"],
    }
    return {"kind": kind, "jobs_dir": str(jobs_dir), "backend": backend}


@pytest.mark.apptainer
@pytest.mark.payload
@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("slurm", marks=pytest.mark.slurm),
    ],
)
def test_production_on_batch_site(
    kind: str, payload: Service, shared_tmp: Path, request: pytest.FixtureRequest
) -> None:
    import uproot

    service: Service = request.getfixturevalue(kind)
    out = shared_tmp / "prod"
    out.mkdir(mode=0o1777)
    out.chmod(0o1777)  # the jobs run as the cluster's user, not as the driver's
    production_request = parse_request(
        {
            "name": f"bu2jpsik-{kind}",
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
    for bind in binds:  # the batch jobs run as another user, who must reach the software
        closed = [str(p) for p in (Path(bind), *Path(bind).parents) if not p.stat().st_mode & 1]
        if closed:
            pytest.skip(f"this installation ({bind}) is not searchable by other users: {closed}")
    jobs_dir = shared_tmp / "jobs"
    jobs_dir.mkdir(mode=0o1777)
    jobs_dir.chmod(0o1777)
    sites = {"hpc": _site(kind, service, jobs_dir)}
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
                production_request,
                client,
                PayloadSettings(command=command, binds=binds),
                poll_interval=1,
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
    assert owners == {2000}  # written by the batch system's user inside the batch job
