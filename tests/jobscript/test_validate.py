"""Bad Pods fail at render time with the field named, never as a half-working script."""

from __future__ import annotations

from typing import Any

import pytest

from flashlink.jobscript import InvalidPodError, JobScriptError, UnsupportedError, render
from flashlink.kube import parse_pod

from ._pods import container, flat, pod


def _spec(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "uid": "u"}, "spec": spec}


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ({}, InvalidPodError, "spec.containers: a Pod needs at least one container"),
        (
            {"containers": [{"name": "c"}]},
            InvalidPodError,
            "spec.containers[0].image: every container needs an image",
        ),
        ({"containers": [{"name": "c", "image": ""}]}, InvalidPodError, "spec.containers[0].image"),
        (
            {"containers": [container("a"), container("a")]},
            InvalidPodError,
            "spec.containers[1].name: container name 'a' is used twice",
        ),
        (
            {"initContainers": [container("a")], "containers": [container("a")]},
            InvalidPodError,
            "spec.containers[0].name: container name 'a' is used twice",
        ),
        (
            {"containers": [container("Bad_Name")]},
            InvalidPodError,
            "'Bad_Name' is not a valid container name",
        ),
        (
            {"containers": [container(volumeMounts=[{"name": "nope", "mountPath": "/x"}])]},
            InvalidPodError,
            "spec.containers[0].volumeMounts[0].name: no volume named 'nope' in spec.volumes "
            "(volumes: none)",
        ),
        (
            {
                "containers": [container(volumeMounts=[{"name": "v", "mountPath": "rel"}])],
                "volumes": [{"name": "v", "emptyDir": {}}],
            },
            InvalidPodError,
            "mountPath: 'rel' must be an absolute path",
        ),
        (
            {
                "containers": [container(volumeMounts=[{"name": "v", "mountPath": "/a:b"}])],
                "volumes": [{"name": "v", "emptyDir": {}}],
            },
            InvalidPodError,
            "without ':'",
        ),
        (
            {
                "containers": [
                    container(
                        volumeMounts=[
                            {"name": "v", "mountPath": "/x"},
                            {"name": "v", "mountPath": "/x/"},
                        ]
                    )
                ],
                "volumes": [{"name": "v", "emptyDir": {}}],
            },
            InvalidPodError,
            "volumeMounts[1].mountPath: '/x' is mounted twice",
        ),
        (
            {
                "containers": [
                    container(volumeMounts=[{"name": "v", "mountPath": "/x", "subPath": "../etc"}])
                ],
                "volumes": [{"name": "v", "emptyDir": {}}],
            },
            InvalidPodError,
            "subPath: '../etc' must be a relative path inside the volume",
        ),
        (
            {
                "containers": [
                    container(volumeMounts=[{"name": "v", "mountPath": "/x", "subPath": "/etc"}])
                ],
                "volumes": [{"name": "v", "emptyDir": {}}],
            },
            InvalidPodError,
            "subPath: '/etc' must be a relative path",
        ),
        (
            {
                "containers": [container()],
                "volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}],
            },
            InvalidPodError,
            "spec.volumes[1].name: volume 'v' is defined twice",
        ),
        (
            {"containers": [container(workingDir="relative")]},
            InvalidPodError,
            "spec.containers[0].workingDir",
        ),
        (
            {"containers": [container(command=["echo", "a\x00b"])]},
            InvalidPodError,
            "spec.containers[0].command[1]: contains a NUL byte",
        ),
        (
            {"containers": [container(securityContext={"privileged": True})]},
            UnsupportedError,
            "privileged containers cannot run",
        ),
        (
            {
                "initContainers": [container("side", restartPolicy="Always")],
                "containers": [container()],
            },
            UnsupportedError,
            "sidecar init containers",
        ),
        (
            {"containers": [container()], "activeDeadlineSeconds": 0},
            InvalidPodError,
            "spec.activeDeadlineSeconds",
        ),
        (
            {"containers": [container(env=[{"name": "X", "value": "a\x00"}])]},
            InvalidPodError,
            "spec.containers[0].env[0].value: contains a NUL byte",
        ),
        (
            {"containers": [container(resources={"limits": {"cpu": "lots"}})]},
            InvalidPodError,
            "spec.containers[0].resources.limits.cpu: 'lots' is not a Kubernetes quantity",
        ),
    ],
)
def test_invalid_pods(spec: dict[str, Any], error: type[JobScriptError], message: str) -> None:
    with pytest.raises(error) as info:
        render(parse_pod(_spec(**spec)))
    assert message in str(info.value)
    assert info.value.field in str(info.value)


def test_apptainer_refuses_names_it_cannot_set_but_podman_takes_them() -> None:
    from flashlink.jobscript import RenderConfig

    p = pod(container(env=[{"name": "my.var", "value": "x"}]))
    with pytest.raises(
        UnsupportedError, match=r"spec.containers\[0\].env\[0\]: 'my.var': Apptainer can only"
    ):
        render(p)
    text = flat(render(p, RenderConfig(runtime="podman")).text)
    assert "my.var=x" in text
    assert "--env-file" in text


def test_apptainer_refuses_commas_in_mount_paths() -> None:
    p = pod(
        container(volumeMounts=[{"name": "v", "mountPath": "/a,b"}]),
        volumes=({"name": "v", "emptyDir": {}},),
    )
    with pytest.raises(UnsupportedError, match=r"volumeMounts\[0\].mountPath: '/a,b' holds one of"):
        render(p)


def test_apptainer_refuses_the_one_character_its_env_injection_cannot_carry() -> None:
    p = pod(container(env=[{"name": "X", "value": "a\x80b"}]))
    with pytest.raises(
        UnsupportedError, match=r"env\[0\]: 'X': .* cannot carry the characters U\+0080 and U\+0081"
    ):
        render(p)
