"""Pods of a production: Kubernetes-schema valid, deterministic, the right steps per job."""

from __future__ import annotations

import sys

import pytest

from flashlink.jobscript import parse_config, render
from flashlink.kube import parse_pod
from flashlink.production import (
    PayloadSettings,
    ProductionError,
    build_job_pod,
    build_reference_pod,
    check_pod_schema,
    parse_request,
    plan_jobs,
    software_binds,
)
from flashlink.production.client import pod_phase

REQUEST = parse_request(
    {
        "name": "bu2jpsik",
        "event": {"kind": "gun", "channel": "Bu2JpsiK"},
        "events": 250,
        "events_per_job": 100,
        "seed": 7,
        "output": "/data/it's here",
        "site": "leonardo",
        "resources": {"cpu": "2", "memory": "3Gi"},
        "models": "/models/v1",
        "oversampling": 4,
    }
)
PAYLOAD = PayloadSettings(command="/opt/venv/bin/flashlink", binds=("/opt/venv",))


def test_plan_covers_every_event_once() -> None:
    jobs = plan_jobs(REQUEST)
    assert [j.events for j in jobs] == [100, 100, 50]
    assert [j.seed for j in jobs] == [7, 8, 9]
    assert len({j.directory for j in jobs}) == 3


def test_job_pod() -> None:
    job = plan_jobs(REQUEST)[1]
    pod = build_job_pod(REQUEST, job, 2, PAYLOAD)
    assert pod == build_job_pod(REQUEST, job, 2, PAYLOAD)  # deterministic, UID included
    assert pod["metadata"]["uid"] != build_job_pod(REQUEST, job, 3, PAYLOAD)["metadata"]["uid"]
    spec = pod["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["generate", "flash"]
    assert [c["name"] for c in spec["containers"]] == ["ntuple"]
    generate, flash = spec["initContainers"]
    out = "/data/it's here/jobs/j0001/a2"
    assert generate["args"][:6] == [
        "sim",
        "generate",
        f"{out}/events.parquet",
        "--events",
        "100",
        "--seed",
    ]
    assert flash["args"][flash["args"].index("--oversample") + 1] == "4"
    assert "--family" not in flash["args"]  # auto: the set's own choice
    mixed = parse_request({**REQUEST.model_dump(), "family": "covariance=mlp"})
    mixed_flash = build_job_pod(mixed, job, 2, PAYLOAD)["spec"]["initContainers"][1]["args"]
    assert mixed_flash[mixed_flash.index("--family") + 1] == "covariance=mlp"
    ntuple = spec["containers"][0]["args"]
    assert ntuple[ntuple.index("--run-number") + 1] == "2"  # job 1: run 2 (0 = no production)
    assert flash["args"][flash["args"].index("--models") + 1] == "/models/v1"
    assert generate["command"] == ["/opt/venv/bin/flashlink"]
    assert generate["resources"]["requests"] == {"cpu": "2", "memory": "3Gi"}
    assert {
        "key": "pool.vk.io",
        "operator": "Equal",
        "value": "leonardo",
        "effect": "NoSchedule",
    } in spec["tolerations"]
    mounts = {m["mountPath"]: m for m in generate["volumeMounts"]}
    assert mounts["/opt/venv"]["readOnly"] is True
    assert "readOnly" not in mounts["/data/it's here"]


def test_reference_pod_validates_flash_against_detailed() -> None:
    pod = build_reference_pod(REQUEST, 1, PAYLOAD)
    names = [c["name"] for c in pod["spec"]["initContainers"] + pod["spec"]["containers"]]
    assert names == ["generate", "detailed", "flash", "validate"]
    assert pod["spec"]["containers"][0]["args"][:2] == ["sim", "validate"]


def test_pythia_and_detailed_steps() -> None:
    request = REQUEST.model_copy(
        update={
            "event": REQUEST.event.model_copy(update={"kind": "pythia", "process": "bbbar"}),
            "simulation": "detailed",
            "oversampling": 1,
        }
    )
    pod = build_job_pod(request, plan_jobs(request)[0], 1, PAYLOAD)
    generate, detailed = pod["spec"]["initContainers"]
    assert generate["args"][-2:] == ["--mode", "bbbar"]
    assert detailed["args"][:2] == ["sim", "detailed"]
    assert "--busy" in pod["spec"]["containers"][0]["args"]


def test_schema_check_refuses_unknown_fields() -> None:
    pod = build_job_pod(REQUEST, plan_jobs(REQUEST)[0], 1, PAYLOAD)
    pod["spec"]["containers"][0]["resourcez"] = {}
    with pytest.raises(ProductionError, match=r"pod\.spec\.containers\[0\]\.resourcez"):
        check_pod_schema(pod)


def test_pod_renders_to_a_job_script() -> None:
    """The plugin accepts these Pods: the pure renderer turns them into a script."""
    pod = build_job_pod(REQUEST, plan_jobs(REQUEST)[0], 1, PAYLOAD)
    config = parse_config({"volumes": {"host_path_prefixes": ["/data", "/opt/venv"]}})
    script = render(parse_pod(pod), config)
    assert "/opt/venv/bin/flashlink" in script.text
    assert script.resources.cpu == 2


@pytest.mark.parametrize(
    ("status", "phase"),
    [
        (
            {"initContainers": [{"name": "a", "state": {"waiting": {}}}], "containers": []},
            "Pending",
        ),
        (
            {
                "initContainers": [{"name": "a", "state": {"running": {}}}],
                "containers": [{"name": "b", "state": {"waiting": {}}}],
            },
            "Running",
        ),
        (
            {
                "initContainers": [{"name": "a", "state": {"terminated": {"exitCode": 1}}}],
                "containers": [{"name": "b", "state": {"waiting": {}}}],
            },
            "Failed",
        ),
        (
            {
                "initContainers": [{"name": "a", "state": {"terminated": {"exitCode": 0}}}],
                "containers": [{"name": "b", "state": {"terminated": {"exitCode": 0}}}],
            },
            "Succeeded",
        ),
    ],
)
def test_pod_phase(status: dict[str, object], phase: str) -> None:
    assert pod_phase(status) == phase


@pytest.mark.parametrize(
    ("base", "bound"),
    [("/usr", False), ("/usr/local", False), ("/opt/pyenv/versions/3.11.7", True)],
)
def test_software_binds_bring_an_interpreter_from_outside_usr(
    monkeypatch: pytest.MonkeyPatch, base: str, bound: bool
) -> None:
    # a venv made from pyenv/conda links its python outside /usr: the job needs that too
    monkeypatch.setattr(sys, "base_prefix", base)
    venv, command, binds = software_binds()
    assert command == f"{venv}/bin/flashlink"
    assert venv in binds or any(venv.startswith(b + "/") for b in binds)
    assert (base in binds) is bound
