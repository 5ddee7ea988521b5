"""The test helpers themselves: a Pod built by ``support.pod`` carries what the test asked."""

from __future__ import annotations

import pytest

from plugin.support import container, pod, uid


def test_pod_passes_podspec_fields_through_and_refuses_unknown_ones() -> None:
    made = pod(uid(1), "p", [container("main", "true")], activeDeadlineSeconds=60)
    assert made["spec"]["activeDeadlineSeconds"] == 60
    with pytest.raises(TypeError, match=r"unknown PodSpec field\(s\) activeDeadline;.*valid: "):
        pod(uid(1), "p", [container("main", "true")], activeDeadline=60)
    with pytest.raises(TypeError, match="initContainers"):
        pod(uid(1), "p", [], initContainers=[])  # pod() takes them as init=
