"""The interLink messages with their exact keys (reference/interlink-contract.md)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from flashlink.kube import (
    ContainerState,
    ContainerStateTerminated,
    ContainerStatus,
    CreateStruct,
    InvalidObjectError,
    PingResponse,
    PodStatus,
    RetrievedPodData,
    parse_create_request,
    parse_log_request,
    parse_pod,
)

from .test_pod import C2_POD

C2_BODY: dict[str, Any] = {
    "pod": C2_POD,
    "container": [
        {
            "name": "main",
            "configMaps": None,
            "projectedvolumemaps": None,
            "secrets": None,
            "emptyDirs": None,
        }
    ],
}


@pytest.mark.parametrize("shape", ["object", "array"])
def test_create_request_in_both_shapes(shape: str) -> None:
    body: Any = copy.deepcopy(C2_BODY)
    if shape == "array":
        body = [body]
    request = parse_create_request(body)
    assert request.pod.metadata.name == "hello"
    assert request.container[0].config_maps == []
    assert request.container[0].secrets == []


@pytest.mark.parametrize("body", [[], [C2_BODY, C2_BODY], "pod", {"container": []}])
def test_malformed_create_requests_are_refused(body: Any) -> None:
    with pytest.raises(InvalidObjectError):
        parse_create_request(body)


def test_objects_are_gathered_across_containers() -> None:
    cm = {"metadata": {"name": "cfg"}, "data": {"a": "1"}}
    body = copy.deepcopy(C2_BODY)
    body["container"] = [
        {"name": "a", "configMaps": [cm], "secrets": [{"metadata": {"name": "s"}, "data": {}}]},
        {
            "name": "b",
            "configMaps": [cm],
            "projectedvolumemaps": [
                {"metadata": {"name": "kube-api-access-x"}, "data": {"token": "t"}}
            ],
        },
    ]
    request = parse_create_request(body)
    assert list(request.config_maps()) == ["cfg"]
    assert list(request.secrets()) == ["s"]
    assert request.projected_volume_maps()["kube-api-access-x"].data == {"token": "t"}
    assert request.to_wire()["container"][1]["projectedvolumemaps"][0]["data"] == {"token": "t"}


def test_from_pod_builds_a_request_with_one_entry_per_container() -> None:
    pod = parse_pod(
        {
            "spec": {
                "initContainers": [{"name": "i", "image": "x"}],
                "containers": [{"name": "c", "image": "x"}],
            }
        }
    )
    request = RetrievedPodData.from_pod(pod)
    assert [c.name for c in request.container] == ["i", "c"]


def test_create_answer_keys() -> None:
    assert CreateStruct(PodUID="u", PodJID="42").to_wire() == {"PodUID": "u", "PodJID": "42"}


def test_status_answer_keys_and_times() -> None:
    started = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
    status = PodStatus(
        name="hello",
        UID="u",
        namespace="default",
        JID="7",
        containers=[
            ContainerStatus(
                name="main",
                state=ContainerState(
                    terminated=ContainerStateTerminated(
                        exit_code=3, reason="Error", started_at=started, finished_at=started
                    )
                ),
            )
        ],
    )
    wire = status.to_wire()
    assert set(wire) == {"name", "UID", "namespace", "JID", "containers", "initContainers"}
    terminated = wire["containers"][0]["state"]["terminated"]
    assert terminated == {
        "exitCode": 3,
        "reason": "Error",
        "startedAt": "2026-11-22T10:00:00Z",
        "finishedAt": "2026-11-22T10:00:00Z",
    }


def test_log_request_odd_keys() -> None:
    request = parse_log_request(
        {
            "Namespace": "default",
            "PodUID": "u",
            "PodName": "hello",
            "ContainerName": "main",
            "Opts": {
                "Tail": 5,
                "Bytes": 10,
                "Timestamps": True,
                "Follow": False,
                "Previous": False,
                "SinceSeconds": 0,
                "SinceTime": "0001-01-01T00:00:00Z",
            },
        }
    )
    assert (request.opts.tail, request.opts.limit_bytes, request.opts.since_time) == (5, 10, None)
    assert request.opts.timestamps is True
    assert request.to_wire()["Opts"]["Bytes"] == 10
    legacy = parse_log_request(
        {
            "Namespace": "d",
            "PodUID": "u",
            "PodName": "p",
            "ContainerName": "c",
            "Opts": {"LimitBytes": 7, "SinceTime": "2026-01-01T00:00:00Z"},
        }
    )
    assert legacy.opts.limit_bytes == 7
    assert legacy.opts.since_time == datetime(2026, 1, 1, tzinfo=UTC)


def test_ping_response() -> None:
    ping = PingResponse.model_validate(
        {
            "status": "ok",
            "resources": {
                "cpu": "100",
                "memory": "128Gi",
                "pods": "100",
                "accelerators": [{"resourceType": "nvidia.com/gpu", "available": "8"}],
            },
            "taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}],
        }
    )
    wire = ping.to_wire()
    assert wire["resources"]["accelerators"] == [
        {"resourceType": "nvidia.com/gpu", "available": "8"}
    ]
    assert wire["taints"] == [{"key": "k", "value": "v", "effect": "NoSchedule"}]
