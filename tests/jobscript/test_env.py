"""The kubelet's environment rules, resolved at render time."""

from __future__ import annotations

import pytest

from flashlink.jobscript.env import ObjectStore, expand, resolve_env
from flashlink.jobscript.errors import InvalidPodError, MissingObjectError, UnsupportedError

from ._pods import UID, config_map, container, pod, secret


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)", "1"),
        ("x$(A)y$(B)z", "x1y2z"),
        ("$$(A)", "$(A)"),
        ("$$$(A)", "$1"),
        ("$(UNKNOWN)", "$(UNKNOWN)"),
        ("$(A", "$(A"),
        ("$A", "$A"),
        ("end$", "end$"),
        ("$$", "$"),
        ("$()", "$()"),
        ("${A}", "${A}"),
    ],
)
def test_kubernetes_expansion(text: str, expected: str) -> None:
    # the cases of k8s.io/kubernetes third_party/forked/golang/expansion/expand_test.go
    assert expand(text, {"A": "1", "B": "2"}) == expected


def _env(
    fields: dict[str, object], store: ObjectStore | None = None, **pod_kw: object
) -> dict[str, str]:
    p = pod(container(**fields), **pod_kw)  # type: ignore[arg-type]
    return resolve_env(p, p.spec.containers[0], store or ObjectStore(), "spec.containers[0]")


def test_order_precedence_and_expansion() -> None:
    store = ObjectStore(
        config_maps={"cm": config_map("cm", {"A": "from-cm", "B": "b", "bad=key": "x"})},
        secrets={"s": secret("s", {"TOKEN": b"t0k3n", "bin": b"\xff\xfe"})},
    )
    env = _env(
        {
            "envFrom": [
                {"configMapRef": {"name": "cm"}},
                {"secretRef": {"name": "s"}, "prefix": "S_"},
            ],
            "env": [
                {"name": "A", "value": "literal"},
                {"name": "C", "value": "$(A)-$(B)-$(S_TOKEN)-$(NOPE)-$$(A)"},
                {"name": "P", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "U", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                {"name": "L", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "B"}}},
                {"name": "T", "valueFrom": {"secretKeyRef": {"name": "s", "key": "TOKEN"}}},
                {"name": "V", "value": "$(P)"},
            ],
        },
        store,
    )
    assert env == {
        "B": "b",
        "S_TOKEN": "t0k3n",
        "A": "literal",
        "C": "literal-b-t0k3n-$(NOPE)-$(A)",
        "P": "hello",
        "U": UID,
        "L": "demo",
        "K": "b",
        "T": "t0k3n",
        "V": "hello",
    }


def test_resource_field_ref_rounds_up_and_falls_back_to_the_request() -> None:
    env = _env(
        {
            "resources": {"limits": {"cpu": "1500m"}, "requests": {"memory": "100Mi"}},
            "env": [
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                {
                    "name": "MCPU",
                    "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}},
                },
                {
                    "name": "MEM",
                    "valueFrom": {
                        "resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}
                    },
                },
            ],
        }
    )
    assert env == {"CPU": "2", "MCPU": "1500", "MEM": "100"}


def test_pod_ip_comes_from_interlinks_annotation() -> None:
    env = _env(
        {"env": [{"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]},
        annotations={"interlink.eu/pod-ip": "10.1.2.3"},
    )
    assert env == {"IP": "10.1.2.3"}


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        (
            {
                "env": [
                    {"name": "X", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "k"}}}
                ]
            },
            MissingObjectError,
            "spec.containers[0].env[0].valueFrom.secretKeyRef: Secret 'missing' was not supplied",
        ),
        (
            {
                "env": [
                    {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "nope"}}}
                ]
            },
            MissingObjectError,
            "ConfigMap 'cm' has no key 'nope'; its keys: k",
        ),
        (
            {"envFrom": [{"configMapRef": {"name": "absent"}}]},
            MissingObjectError,
            "spec.containers[0].envFrom[0]: ConfigMap 'absent' was not supplied",
        ),
        (
            {"env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.nope"}}}]},
            UnsupportedError,
            "'spec.nope' is not a downward-API field",
        ),
        (
            {"env": [{"name": "X", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]},
            UnsupportedError,
            "sets neither limits.cpu nor requests.cpu",
        ),
        (
            {"env": [{"name": "A=B", "value": "x"}]},
            InvalidPodError,
            "is not an environment variable name",
        ),
        ({"env": [{"name": "X", "valueFrom": {}}]}, InvalidPodError, "needs one of fieldRef"),
    ],
)
def test_errors_name_the_field(
    fields: dict[str, object], error: type[Exception], message: str
) -> None:
    store = ObjectStore(config_maps={"cm": config_map("cm", {"k": "v"})})
    with pytest.raises(error) as info:
        _env(fields, store)
    assert message in str(info.value)


def test_optional_references_are_skipped() -> None:
    env = _env(
        {
            "envFrom": [{"secretRef": {"name": "absent", "optional": True}}],
            "env": [
                {
                    "name": "X",
                    "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}},
                },
                {"name": "Y", "value": "y"},
            ],
        }
    )
    assert env == {"Y": "y"}
