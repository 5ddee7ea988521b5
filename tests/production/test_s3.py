"""Productions with ``output: s3://bucket/prefix``: the Pods, the Secret that carries the S3
settings, the local state directory, and a whole run through ``flashlink production run`` on
the local site with the real S3 server (SeaweedFS)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from flashlink.jobscript import parse_config, render
from flashlink.jobscript.errors import MissingObjectError
from flashlink.kube import RetrievedPodData, parse_pod
from flashlink.production import (
    Journal,
    PayloadSettings,
    PluginClient,
    Production,
    ProductionError,
    build_job_pod,
    build_reference_pod,
    parse_request,
    plan_jobs,
    s3_secret,
    state_root,
)
from flashlink.production.client import create_body
from flashlink.production.snakemake import write_snakefile
from servicekit import Service
from servicekit.s3 import aws_env, new_bucket
from servicekit.s3 import client as s3_client

FLASHLINK = Path(sys.executable).parent / "flashlink"
IMAGE = "ghcr.io/flashlink/payload:latest"
AWS = {
    "AWS_ACCESS_KEY_ID": "AKID",
    "AWS_SECRET_ACCESS_KEY": "it's $(secret) `x`",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
    "HOME": "/root",  # not an S3 variable: never copied into the Secret
}


def _request(output: str = "s3://bucket/prod/bu2jpsik", **changes: Any) -> Any:
    data = {
        "name": "bu2jpsik-s3",
        "event": {"kind": "gun", "channel": "Bu2JpsiK"},
        "events": 200,
        "events_per_job": 100,
        "simulation": "detailed",
        "output": output,
        "reference": {"events": 50},
        "image": IMAGE,
        **changes,
    }
    return parse_request(data)


PAYLOAD = PayloadSettings(command="/opt/venv/bin/flashlink", binds=("/opt/venv",))


def test_s3_pods_read_the_secret_and_mount_no_output() -> None:
    request = _request()
    pods = [build_job_pod(request, job, 1, PAYLOAD) for job in plan_jobs(request)]
    pods.append(build_reference_pod(request, 1, PAYLOAD))
    for pod in pods:
        spec = pod["spec"]
        assert [v["name"] for v in spec["volumes"]] == ["software-0"]  # no hostPath output
        for c in spec["initContainers"] + spec["containers"]:
            assert c["envFrom"] == [{"secretRef": {"name": "bu2jpsik-s3-s3"}}]
            assert all(a.startswith("s3://bucket/prod/bu2jpsik/") for a in c["args"] if "/" in a)
        assert "AKID" not in json.dumps(pod)  # the Pod names the Secret, never its values
    directory = build_job_pod(_request("/data/p"), plan_jobs(_request("/data/p"))[0], 1, PAYLOAD)
    assert all("envFrom" not in c for c in directory["spec"]["containers"])


def test_the_secret_reaches_every_container_of_the_job_script() -> None:
    request = _request()
    secret = s3_secret(request, AWS)
    assert secret["metadata"]["name"] == "bu2jpsik-s3-s3"
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == {k: v for k, v in AWS.items() if k.startswith("AWS_")}
    pod = build_job_pod(request, plan_jobs(request)[0], 1, PAYLOAD)
    body = create_body(pod, [secret])
    assert [len(entry["secrets"]) for entry in body["container"]] == [1, 1, 1]
    config = parse_config({"volumes": {"host_path_prefixes": ["/opt/venv"]}})
    script = render(RetrievedPodData.model_validate(body), config)
    assert script.contains_secrets
    # without the Secret the plugin refuses the Pod, naming what is missing
    with pytest.raises(MissingObjectError, match="bu2jpsik-s3-s3"):
        render(parse_pod(pod), config)


def test_missing_credentials_are_named_before_any_submission(tmp_path: Path) -> None:
    with pytest.raises(ProductionError, match="AWS_SECRET_ACCESS_KEY is not set"):
        s3_secret(_request(), {"AWS_ACCESS_KEY_ID": "x"})
    # a driver without credentials stops before it calls the plugin (nothing listens here)
    client = PluginClient("http://127.0.0.1:9")
    try:
        production = Production(_request(), client, PAYLOAD, state_dir=tmp_path, environ={})
        with pytest.raises(ProductionError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
            production.run()
    finally:
        client.close()
    assert Journal(tmp_path).entries() == []


def test_state_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    first = state_root(_request())
    assert first.parent == tmp_path / "flashlink" / "productions"
    assert first.name.startswith("bu2jpsik-s3-")
    assert state_root(_request("s3://other/prefix")) != first  # one per output location
    assert state_root(_request("/data/p")) == Path("/data/p")  # beside a directory output
    assert state_root(_request(), tmp_path / "x") == tmp_path / "x"


def test_snakefile_refuses_an_s3_output() -> None:
    with pytest.raises(ProductionError, match="default-storage-provider s3"):
        write_snakefile(_request(), PAYLOAD)


@pytest.mark.s3
@pytest.mark.apptainer
@pytest.mark.payload
def test_cli_production_on_s3(s3: Service, payload: Service, shared_tmp: Path) -> None:
    """``flashlink production run`` with an S3 output on the local site: outputs in the
    bucket, state in --state-dir, and nothing with the output's name on the local disk."""
    bucket = new_bucket(s3, "cli")
    client = s3_client(s3)
    output = f"s3://{bucket}/cli"
    request = shared_tmp / "request.yaml"
    data = _request(output, reference={"events": 0}, retries=0).model_dump()
    request.write_text(yaml.safe_dump(data))
    state = shared_tmp / "state"
    env = {**os.environ, **aws_env(s3), "COLUMNS": "200"}
    env["PATH"] = f"{Path(payload.env['APPTAINER']).parent}:{env['PATH']}"
    common = [str(request), "--state-dir", str(state)]
    run = subprocess.run(
        [str(FLASHLINK), "production", "run", *common, "--poll-interval", "0.5"],
        env=env,
        cwd=shared_tmp,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"merged ntuple: {output}/ntuple.root" in run.stdout
    assert f"provenance: {output}/provenance.json" in run.stdout
    listed = client.list_objects_v2(Bucket=bucket, Prefix="cli/")["Contents"]
    keys = {o["Key"] for o in listed}
    assert {"cli/ntuple.root", "cli/provenance.json", "cli/jobs/j0001/a1/ntuple.root"} <= keys
    assert not any("logs" in k or "done.json" in k or "journal" in k for k in keys)
    assert sorted(p.name for p in (state / "jobs").glob("*/done.json")) == ["done.json"] * 2
    assert not (shared_tmp / "s3:").exists()  # no URL taken for a relative path
    assert not list(state.glob("*.merging")) + list(state.glob("*.writing"))
    record = json.loads(client.get_object(Bucket=bucket, Key="cli/provenance.json")["Body"].read())
    assert record["events"] == 200
    assert record["merged_ntuple_bytes"] == next(
        o["Size"] for o in listed if o["Key"] == "cli/ntuple.root"
    )
    status = subprocess.run(
        [str(FLASHLINK), "production", "status", *common],
        env={**os.environ, "COLUMNS": "200"},  # status needs no credentials
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "2/2 done; 2 submissions" in status.stdout, status.stdout + status.stderr
