"""Pods as interLink sends them: camelCase, unknown fields, nulls, and clear errors."""

from __future__ import annotations

from typing import Any

import pytest

from flashlink.kube import InvalidObjectError, Pod, Volume, parse_pod

C2_POD: dict[str, Any] = {
    "metadata": {
        "name": "hello",
        "namespace": "default",
        "uid": "11111111-1111-4111-8111-111111111111",
        "annotations": {},
    },
    "spec": {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "main",
                "image": "busybox:1.36",
                "command": ["sh", "-c"],
                "args": ["echo hello; exit 0"],
                "resources": {"requests": {"cpu": "1", "memory": "100Mi"}},
            }
        ],
    },
    "status": {"phase": "Pending"},
}


def test_reads_the_contract_example() -> None:
    pod = parse_pod(C2_POD)
    container = pod.spec.containers[0]
    assert (pod.metadata.name, pod.metadata.uid) == (
        "hello",
        "11111111-1111-4111-8111-111111111111",
    )
    assert container.command == ["sh", "-c"]
    assert container.resources.requests == {"cpu": "1", "memory": "100Mi"}
    assert pod.status is not None
    assert pod.status.phase == "Pending"


def test_unknown_fields_survive_a_round_trip() -> None:
    data = {
        "metadata": {"name": "p", "uid": "u", "managedFields": [{"manager": "kubectl"}]},
        "spec": {
            "containers": [
                {"name": "c", "image": "i", "livenessProbe": {"exec": {"command": ["x"]}}}
            ],
            "affinity": {"nodeAffinity": {}},
            "volumes": [{"name": "n", "nfs": {"server": "s", "path": "/p"}}],
        },
        "status": {"qosClass": "BestEffort", "podIP": "10.0.0.1"},
    }
    wire = parse_pod(data).to_wire()
    assert wire["metadata"]["managedFields"] == [{"manager": "kubectl"}]
    assert wire["spec"]["containers"][0]["livenessProbe"] == {"exec": {"command": ["x"]}}
    assert wire["spec"]["affinity"] == {"nodeAffinity": {}}
    assert wire["spec"]["volumes"][0]["nfs"] == {"server": "s", "path": "/p"}
    assert wire["status"]["podIP"] == "10.0.0.1"
    assert wire["status"]["qosClass"] == "BestEffort"
    assert parse_pod(wire).to_wire() == wire


def test_go_nulls_read_as_empty() -> None:
    pod = parse_pod(
        {
            "metadata": {"name": "p", "labels": None, "annotations": None},
            "spec": {
                "containers": [{"name": "c", "image": "i", "env": None, "volumeMounts": None}],
                "initContainers": None,
                "volumes": None,
                "tolerations": None,
            },
        }
    )
    assert pod.metadata.labels == {}
    assert pod.metadata.annotations == {}
    assert pod.spec.init_containers == []
    assert pod.spec.volumes == []
    assert pod.spec.containers[0].env == []
    assert pod.spec.containers[0].volume_mounts == []


def test_yaml_numbers_are_quantities() -> None:
    pod = parse_pod(
        {
            "spec": {
                "containers": [
                    {"name": "c", "image": "i", "resources": {"limits": {"cpu": 2, "memory": 0.5}}}
                ]
            }
        }
    )
    assert pod.spec.containers[0].resources.limits == {"cpu": "2", "memory": "0.5"}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"spec": {"containers": [{"image": "i"}]}}, "spec.containers[0].name: Field required"),
        (
            {"spec": {"containers": [{"name": "c", "image": 3}]}},
            "spec.containers[0].image: Input should be a valid string",
        ),
        (
            {"spec": {"containers": [{"name": "c", "args": "echo hi"}]}},
            "spec.containers[0].args: Input should be a valid list",
        ),
        ({"spec": {"activeDeadlineSeconds": "soon"}}, "spec.activeDeadlineSeconds"),
        ({"kind": "Deployment"}, "kind: expected 'Pod', got 'Deployment'"),
        (["not", "a", "pod"], "expected a mapping, got list"),
    ],
)
def test_errors_name_the_field(data: Any, expected: str) -> None:
    with pytest.raises(InvalidObjectError) as info:
        parse_pod(data)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ({"emptyDir": {}}, "emptyDir"),
        ({"emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}, "emptyDir"),
        ({"configMap": {"name": "c"}}, "configMap"),
        ({"secret": {"secretName": "s"}}, "secret"),
        ({"projected": {"sources": []}}, "projected"),
        ({"downwardAPI": {"items": []}}, "downwardAPI"),
        ({"hostPath": {"path": "/data"}}, "hostPath"),
        ({"persistentVolumeClaim": {"claimName": "c"}}, "persistentVolumeClaim"),
        ({"csi": {"driver": "x"}}, "csi"),
        ({}, ""),
    ],
)
def test_volume_kind(source: dict[str, Any], kind: str) -> None:
    assert Volume.model_validate({"name": "v", **source}).kind == kind


def test_snake_case_names_are_accepted_too() -> None:
    pod = Pod.model_validate(
        {
            "spec": {
                "containers": [
                    {"name": "c", "image": "i", "working_dir": "/w", "volume_mounts": []}
                ]
            }
        }
    )
    assert pod.spec.containers[0].working_dir == "/w"
    assert pod.to_wire()["spec"]["containers"][0]["workingDir"] == "/w"
