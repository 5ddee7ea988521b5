"""Volume planning: which files a volume holds, with which modes, and every refusal."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

from flashlink.jobscript import (
    InvalidPodError,
    JobScriptError,
    MissingObjectError,
    RenderConfig,
    UnsupportedError,
    parse_config,
    render,
)
from flashlink.jobscript.env import ObjectStore
from flashlink.jobscript.volumes import plan_volumes

from ._pods import config_map, container, flat, pod, request, secret


def _files(script: str) -> dict[str, tuple[str, bytes]]:
    """relative path -> (mode, content) of every file the script writes into a volume."""
    out = {}
    for match in re.finditer(r"^    fl_file \S+ (\S+) (\d{4}) (\S+) \|\| return 1$", script, re.M):
        path, mode, data = match.groups()
        out[path.strip("'")] = (mode, base64.b64decode(data.strip("'")))
    return out


def _mounted(*volumes: dict[str, Any], **kw: Any) -> Any:
    mounts = [{"name": v["name"], "mountPath": f"/mnt/{v['name']}"} for v in volumes]
    return pod(container(volumeMounts=mounts), volumes=volumes, **kw)


def test_config_map_items_modes_and_unlisted_keys() -> None:
    p = _mounted(
        {
            "name": "cfg",
            "configMap": {
                "name": "app-cfg",
                "defaultMode": 0o644,
                "items": [{"key": "app.yaml", "path": "conf/app.yaml", "mode": 0o400}],
            },
        }
    )
    js = render(
        request(p, config_maps=(config_map("app-cfg", {"app.yaml": "k: v\n", "other": "x"}),))
    )
    assert _files(js.text) == {"conf/app.yaml": ("0400", b"k: v\n")}


def test_every_key_without_items_and_binary_data() -> None:
    blob = bytes(range(256))
    p = _mounted({"name": "cfg", "configMap": {"name": "c"}})
    js = render(request(p, config_maps=(config_map("c", {"a": "1"}, binary={"b.bin": blob}),)))
    assert _files(js.text) == {"a": ("0644", b"1"), "b.bin": ("0644", blob)}


def test_secrets_default_to_0600_and_mark_the_script() -> None:
    p = _mounted({"name": "sec", "secret": {"secretName": "creds"}})
    js = render(request(p, secrets=(secret("creds", {"password": b"s3cr3t\xff"}),)))
    assert _files(js.text) == {"password": ("0600", b"s3cr3t\xff")}
    assert js.contains_secrets
    assert b"s3cr3t" not in js.text.encode()  # base64 only, never the plain value
    assert not render(pod()).contains_secrets


def test_projected_volume_from_interlinks_rendering() -> None:
    p = _mounted(
        {
            "name": "kube-api-access-x",
            "projected": {
                "defaultMode": 0o444,
                "sources": [
                    {"serviceAccountToken": {"path": "token"}},
                    {
                        "configMap": {
                            "name": "kube-root-ca.crt",
                            "items": [{"key": "ca.crt", "path": "ca.crt", "mode": 0o400}],
                        }
                    },
                ],
            },
        }
    )
    rendered = config_map(
        "kube-api-access-x", {"token": "abc", "ca.crt": "PEM", "namespace": "default"}
    )
    js = render(request(p, projected=(rendered,)))
    assert _files(js.text) == {
        "token": ("0444", b"abc"),
        "ca.crt": ("0400", b"PEM"),
        "namespace": ("0444", b"default"),
    }


def test_projected_and_downward_api_rendered_here_when_interlink_did_not() -> None:
    p = _mounted(
        {
            "name": "proj",
            "projected": {
                "sources": [
                    {"configMap": {"name": "c", "items": [{"key": "a", "path": "x/a"}]}},
                    {
                        "downwardAPI": {
                            "items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]
                        }
                    },
                    {"serviceAccountToken": {"path": "token"}},
                ]
            },
        },
        {
            "name": "down",
            "downwardAPI": {
                "items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
                    {
                        "path": "mem",
                        "resourceFieldRef": {
                            "containerName": "main",
                            "resource": "limits.memory",
                            "divisor": "1Mi",
                        },
                    },
                ]
            },
        },
        annotations={"b": 'say "hi"\n', "a": "é"},
    )
    p.spec.containers[0].resources.limits["memory"] = "64Mi"
    js = render(request(p, config_maps=(config_map("c", {"a": "A"}),)))
    files = _files(js.text)
    assert files["x/a"] == ("0644", b"A")
    assert files["name"] == ("0644", b"hello")
    assert files["labels"] == ("0644", b'app="demo"')
    assert files["annotations"] == ("0644", 'a="é"\nb="say \\"hi\\"\\n"'.encode())
    assert files["mem"] == ("0644", b"64")
    assert "token" not in files


@pytest.mark.parametrize(
    ("volume", "error", "message"),
    [
        (
            {"name": "v", "configMap": {"name": "absent"}},
            MissingObjectError,
            "spec.volumes[0].configMap: ConfigMap 'absent' was not supplied and the volume is "
            "not optional",
        ),
        (
            {"name": "v", "configMap": {"name": "c", "items": [{"key": "nope", "path": "p"}]}},
            MissingObjectError,
            "spec.volumes[0].configMap.items[0].key: ConfigMap 'c' has no key 'nope'; its keys: k",
        ),
        (
            {"name": "v", "configMap": {"name": "c", "items": [{"key": "k", "path": "../k"}]}},
            InvalidPodError,
            "spec.volumes[0].configMap.items[0].path: '../k' must be a relative path inside the "
            "volume",
        ),
        (
            {
                "name": "v",
                "configMap": {"name": "c", "items": [{"key": "k", "path": "/etc/passwd"}]},
            },
            InvalidPodError,
            "items[0].path: '/etc/passwd' must be a relative path",
        ),
        (
            {"name": "v", "configMap": {"name": "c", "defaultMode": 4096}},
            InvalidPodError,
            "spec.volumes[0].configMap.defaultMode: 4096 is not a file mode",
        ),
        (
            {"name": "v", "hostPath": {"path": "/etc"}},
            UnsupportedError,
            "spec.volumes[0].hostPath.path: '/etc' is not under an allowed prefix "
            "(none configured)",
        ),
        (
            {"name": "v", "hostPath": {"path": "/data/../etc"}},
            InvalidPodError,
            "must be absolute, without '..'",
        ),
        (
            {"name": "v", "persistentVolumeClaim": {"claimName": "data"}},
            UnsupportedError,
            "claim 'data' has no host directory on this node (configured claims: none configured)",
        ),
        (
            {"name": "v", "nfs": {"server": "s", "path": "/"}},
            UnsupportedError,
            "spec.volumes[0]: volume 'v' of kind 'nfs' is not supported on a batch node; "
            "supported: emptyDir",
        ),
        ({"name": "v", "emptyDir": {"medium": "HugePages"}}, UnsupportedError, "emptyDir.medium"),
    ],
)
def test_refusals(volume: dict[str, Any], error: type[JobScriptError], message: str) -> None:
    with pytest.raises(error) as info:
        render(request(_mounted(volume), config_maps=(config_map("c", {"k": "v"}),)))
    assert message in str(info.value)


def test_optional_missing_objects_give_empty_volumes() -> None:
    p = _mounted(
        {"name": "v", "configMap": {"name": "absent", "optional": True}},
        {
            "name": "w",
            "secret": {"secretName": "c", "optional": True, "items": [{"key": "x", "path": "x"}]},
        },
    )
    assert _files(render(request(p, secrets=(secret("c", {"k": b"v"}),))).text) == {}


def test_host_paths_and_claims_as_configured() -> None:
    config = parse_config(
        {
            "volumes": {
                "host_path_prefixes": ["/data"],
                "persistent_volume_claims": {"big": "/shared/big"},
            }
        }
    )
    p = _mounted(
        {"name": "h", "hostPath": {"path": "/data/x/", "type": "DirectoryOrCreate"}},
        {"name": "c", "persistentVolumeClaim": {"claimName": "big"}},
    )
    text = flat(render(p, config).text)
    assert "fl_host_path DirectoryOrCreate /data/x || return 1" in text
    assert "--bind /data/x:/mnt/h " in text
    assert "--bind /shared/big:/mnt/c " in text
    with pytest.raises(UnsupportedError, match="not under an allowed prefix"):
        render(_mounted({"name": "h", "hostPath": {"path": "/database"}}), config)


def test_annotations_turn_any_volume_into_cvmfs_or_fuse() -> None:
    p = _mounted(
        {"name": "sw", "persistentVolumeClaim": {"claimName": "not-existing"}},
        {"name": "fs", "emptyDir": {}},
        annotations={"cvmfs.vk.io/sw": "sft.cern.ch", "fuse.vk.io/fs": "mount-it $MOUNT_POINT"},
    )
    plans = plan_volumes(p, ObjectStore(), {}, RenderConfig())
    assert (plans["sw"].kind, plans["sw"].read_only, plans["sw"].source.render()) == (
        "cvmfs",
        True,
        "/cvmfs/sft.cern.ch",
    )
    assert plans["fs"].kind == "fuse"
    assert (
        "fl_fuse_mount \"${FL_SCRATCH}\"/fuse/1 fs 'mount-it $MOUNT_POINT'" in plans["fs"].setup[0]
    )
    assert "volumes/fs.log" in render(p).outputs


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        (
            {"cvmfs.vk.io/ghost": "x"},
            "metadata.annotations['cvmfs.vk.io/ghost']: names volume 'ghost', which is not in "
            "spec.volumes",
        ),
        ({"cvmfs.vk.io/v": "a/b"}, "'a/b' is not a repository name"),
        ({"cvmfs.vk.io/v": "x", "fuse.vk.io/v": "y"}, "either a CVMFS or a FUSE volume, not both"),
    ],
)
def test_bad_annotations(annotations: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidPodError) as info:
        render(_mounted({"name": "v", "emptyDir": {}}, annotations=annotations))
    assert message in str(info.value)


def test_sub_path_into_file_volumes_is_checked_at_render_time() -> None:
    def with_sub(sub: str) -> Any:
        return pod(
            container(volumeMounts=[{"name": "cfg", "mountPath": "/app.yaml", "subPath": sub}]),
            volumes=(
                {
                    "name": "cfg",
                    "configMap": {"name": "c", "items": [{"key": "k", "path": "conf/app.yaml"}]},
                },
            ),
        )

    cms = (config_map("c", {"k": "v"}),)
    assert '--bind "${FL_SCRATCH}"/volumes/0/conf/app.yaml:/app.yaml:ro' in flat(
        render(request(with_sub("conf/app.yaml"), cms)).text
    )
    assert "/volumes/0/conf:/app.yaml:ro" in flat(render(request(with_sub("conf"), cms)).text)
    with pytest.raises(
        MissingObjectError,
        match=r"volumeMounts\[0\].subPath: 'nope' is not in volume 'cfg'; it holds: conf/app.yaml",
    ):
        render(request(with_sub("nope"), cms))


def test_sub_path_into_writable_volumes_is_resolved_when_the_container_starts() -> None:
    p = pod(
        container(
            env=[{"name": "D", "value": "day1"}],
            volumeMounts=[{"name": "w", "mountPath": "/out", "subPathExpr": "runs/$(D)"}],
        ),
        volumes=({"name": "w", "emptyDir": {}},),
    )
    text = flat(render(p).text)
    assert 'fl_subpath FL_SUB_0 "${FL_SCRATCH}"/volumes/0 runs/day1 1 || {' in text
    assert '--bind "${FL_SUB_0}":/out ' in text
