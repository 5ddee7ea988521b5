"""Pod volumes -> directories on the batch node, and container mounts -> binds.

Supported kinds and where each lives while the job runs:

============================  ===============================================================
``emptyDir``                  a directory in the job's scratch area, shared by the containers
``emptyDir`` medium Memory    the same under the node's memory-backed ``/dev/shm`` when usable
``configMap`` / ``secret``    files written from the data interLink sent (keys, ``items``,
                              modes, ``optional``, binary data); Secrets default to 0600
``projected`` / downwardAPI   interLink's pre-rendered ``projectedvolumemaps`` when present,
                              else rendered here from the sources and the Pod's metadata
``hostPath``                  the host path, only under ``volumes.host_path_prefixes``
``persistentVolumeClaim``     the host directory configured for the claim name
annotation ``cvmfs.vk.io/V``  the node's CVMFS repository named by the annotation's value
annotation ``fuse.vk.io/V``   a FUSE mount made by the annotation's script with $MOUNT_POINT
============================  ===============================================================

File contents are embedded base64 (binary-safe); paths and names are shell-quoted data.
"""

from __future__ import annotations

__all__ = ["CVMFS_ANNOTATION", "FUSE_ANNOTATION", "mount_bind", "plan_volumes"]

import base64
import posixpath
from collections.abc import Mapping

from flashlink.jobscript import _files as files_mod
from flashlink.jobscript._files import Files
from flashlink.jobscript._plan import Bind, VolumePlan
from flashlink.jobscript._shell import Var, Word, quote, word
from flashlink.jobscript.config import RenderConfig
from flashlink.jobscript.env import ObjectStore, expand
from flashlink.jobscript.errors import InvalidPodError, MissingObjectError, UnsupportedError
from flashlink.jobscript.validate import safe_relative_path, text
from flashlink.kube import ConfigMap, Pod, Volume, VolumeMount

CVMFS_ANNOTATION = "cvmfs.vk.io/"
FUSE_ANNOTATION = "fuse.vk.io/"
_HOST_PATH_TYPES = (
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
)
_SUPPORTED = "emptyDir, configMap, secret, projected, downwardAPI, hostPath, persistentVolumeClaim"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _file_lines(source: Word, files: Files) -> tuple[str, ...]:
    lines = [f"fl_dir 0755 {source.render()}"]
    for path in sorted(files):
        data, mode = files[path]
        lines.append(f"fl_file {source.render()} {quote(path)} {mode:04o} {quote(_b64(data))}")
    return tuple(lines)


def _scratch(index: int, sub: str = "volumes", var: str = "FL_SCRATCH") -> Word:
    return word(Var(var), f"/{sub}/{index}")


def _annotation_plan(
    pod: Pod, volume: Volume, index: int, config: RenderConfig
) -> VolumePlan | None:
    annotations = pod.metadata.annotations
    cvmfs = annotations.get(CVMFS_ANNOTATION + volume.name)
    fuse = annotations.get(FUSE_ANNOTATION + volume.name)
    if cvmfs is not None and fuse is not None:
        raise InvalidPodError(
            f"metadata.annotations[{CVMFS_ANNOTATION + volume.name!r}]",
            "a volume is either a CVMFS or a FUSE volume, not both",
        )
    if cvmfs is not None:
        where = f"metadata.annotations[{CVMFS_ANNOTATION + volume.name!r}]"
        repo = text(cvmfs.strip(), where)
        if repo and ("/" in repo or repo in (".", "..")):
            raise InvalidPodError(where, f"{repo!r} is not a repository name such as sft.cern.ch")
        root = config.volumes.cvmfs_root.rstrip("/") or "/"
        path = posixpath.join(root, repo) if repo else root
        what = f"CVMFS repository {repo or '(all)'} for volume {volume.name}"
        return VolumePlan(
            volume.name,
            "cvmfs",
            word(path),
            (f"fl_require_dir {quote(path)} {quote(what)}",),
            read_only=True,
        )
    if fuse is not None:
        where = f"metadata.annotations[{FUSE_ANNOTATION + volume.name!r}]"
        script = text(fuse, where)
        source = _scratch(index, "fuse")
        line = f"fl_fuse_mount {source.render()} {quote(volume.name)} {quote(script)}"
        return VolumePlan(volume.name, "fuse", source, (line,), writable=True)
    return None


def _empty_dir(volume: Volume, index: int, where: str) -> VolumePlan:
    medium = volume.empty_dir.medium if volume.empty_dir else ""
    if medium not in ("", "Memory"):
        raise UnsupportedError(f"{where}.emptyDir.medium", f"{medium!r}; use '' (disk) or 'Memory'")
    memory = medium == "Memory"
    source = _scratch(index, var="FL_MEMORY" if memory else "FL_SCRATCH")
    setup = (f"fl_dir 0777 {source.render()}",)  # 0777 like the kubelet's emptyDirs
    return VolumePlan(volume.name, "emptyDir", source, setup, writable=True, memory=memory)


def _file_volume(
    pod: Pod, volume: Volume, where: str, store: ObjectStore, rendered: ConfigMap | None
) -> Files | None:
    """The files of a file-based volume, or None when the volume is of another kind."""
    if volume.config_map is not None:
        cm = volume.config_map
        mode = files_mod.file_mode(cm.default_mode, 0o644, f"{where}.configMap.defaultMode")
        return files_mod.object_files(
            store,
            "ConfigMap",
            cm.name,
            cm.items,
            mode=mode,
            optional=bool(cm.optional),
            where=f"{where}.configMap",
        )
    if volume.secret is not None:
        sec = volume.secret
        # 0600 unless the Pod says otherwise: the files sit on a shared node's disk
        mode = files_mod.file_mode(sec.default_mode, 0o600, f"{where}.secret.defaultMode")
        return files_mod.object_files(
            store,
            "Secret",
            sec.secret_name,
            sec.items,
            mode=mode,
            optional=bool(sec.optional),
            where=f"{where}.secret",
        )
    if volume.projected is not None:
        return files_mod.projected_files(pod, volume, store, rendered, where)
    if volume.downward_api is not None:
        here = f"{where}.downwardAPI"
        mode = files_mod.file_mode(volume.downward_api.default_mode, 0o644, f"{here}.defaultMode")
        if rendered is not None:  # interLink >= 0.6.2 renders it like a projected volume
            return {safe_relative_path(k, here): (v, mode) for k, v in rendered.files().items()}
        return files_mod.downward_files(pod, volume.downward_api.items, mode, here)
    return None


def _claim(volume: Volume, where: str, config: RenderConfig) -> VolumePlan:
    pvc = volume.persistent_volume_claim
    assert pvc is not None
    path = config.volumes.persistent_volume_claims.get(pvc.claim_name)
    if path is None:
        known = ", ".join(sorted(config.volumes.persistent_volume_claims)) or "none configured"
        raise UnsupportedError(
            f"{where}.persistentVolumeClaim.claimName",
            f"claim {pvc.claim_name!r} has no host directory on this node (configured claims: "
            f"{known}); map it in [volumes] persistent_volume_claims, or use a "
            f"{CVMFS_ANNOTATION}{volume.name} / {FUSE_ANNOTATION}{volume.name} annotation",
        )
    check = f"fl_require_dir {quote(path)} {quote(f'PersistentVolumeClaim {pvc.claim_name}')}"
    return VolumePlan(
        volume.name,
        "persistentVolumeClaim",
        word(path),
        (check,),
        read_only=pvc.read_only,
        writable=True,
    )


def _plan_one(
    pod: Pod,
    volume: Volume,
    index: int,
    store: ObjectStore,
    *,
    projected_maps: Mapping[str, ConfigMap],
    config: RenderConfig,
) -> VolumePlan:
    where = f"spec.volumes[{index}]"
    planned = _annotation_plan(pod, volume, index, config)
    if planned is not None:
        return planned
    if volume.empty_dir is not None:
        return _empty_dir(volume, index, where)
    if volume.host_path is not None:
        return _host_path(volume, where, config)
    if volume.persistent_volume_claim is not None:
        return _claim(volume, where, config)
    files = _file_volume(pod, volume, where, store, projected_maps.get(volume.name))
    if files is None:
        raise UnsupportedError(
            where,
            f"volume {volume.name!r} of kind {volume.kind or '(none)'!r} is not supported on a "
            f"batch node; supported: {_SUPPORTED}, and the {CVMFS_ANNOTATION}NAME and "
            f"{FUSE_ANNOTATION}NAME annotations",
        )
    source = _scratch(index)
    return VolumePlan(
        volume.name,
        volume.kind,
        source,
        _file_lines(source, files),
        read_only=True,
        files=frozenset(files),
    )


def _host_path(volume: Volume, where: str, config: RenderConfig) -> VolumePlan:
    host = volume.host_path
    assert host is not None
    path = text(host.path, f"{where}.hostPath.path")
    if not path.startswith("/") or ".." in path.split("/"):
        raise InvalidPodError(f"{where}.hostPath.path", f"{path!r} must be absolute, without '..'")
    path = posixpath.normpath(path)
    prefixes = [posixpath.normpath(p) for p in config.volumes.host_path_prefixes]
    if not any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes):
        allowed = ", ".join(prefixes) or "none configured"
        raise UnsupportedError(
            f"{where}.hostPath.path",
            f"{path!r} is not under an allowed prefix ({allowed}); "
            "allow it with [volumes] host_path_prefixes in the build config",
        )
    if host.type not in _HOST_PATH_TYPES:
        raise InvalidPodError(
            f"{where}.hostPath.type",
            f"{host.type!r}; valid: {', '.join(t or repr('') for t in _HOST_PATH_TYPES)}",
        )
    line = f"fl_host_path {quote(host.type or '-')} {quote(path)}"
    return VolumePlan(
        volume.name,
        "hostPath",
        word(path),
        (line,),
        writable=host.type in ("", "DirectoryOrCreate", "Directory"),
    )


def plan_volumes(
    pod: Pod, store: ObjectStore, projected_maps: Mapping[str, ConfigMap], config: RenderConfig
) -> dict[str, VolumePlan]:
    """A plan for every volume that some container mounts (unused volumes are not set up)."""
    used = {m.name for c in pod.spec.init_containers + pod.spec.containers for m in c.volume_mounts}
    names = {v.name for v in pod.spec.volumes}
    for key in pod.metadata.annotations:
        for prefix in (CVMFS_ANNOTATION, FUSE_ANNOTATION):
            if key.startswith(prefix) and key[len(prefix) :] not in names:
                raise InvalidPodError(
                    f"metadata.annotations[{key!r}]",
                    f"names volume {key[len(prefix) :]!r}, which is not in spec.volumes; add a "
                    "volume of that name (any kind, e.g. an emptyDir) and mount it",
                )
    return {
        volume.name: _plan_one(pod, volume, i, store, projected_maps=projected_maps, config=config)
        for i, volume in enumerate(pod.spec.volumes)
        if volume.name in used
    }


def mount_bind(
    plan: VolumePlan, mount: VolumeMount, env: Mapping[str, str], var: str, where: str
) -> tuple[Bind, str | None]:
    """The bind for one volumeMount, and the script line that resolves its subPath (if any).

    A subPath into a file-based volume is checked now against the files it will hold. Into a
    writable volume it is resolved when the container starts (a previous container may have
    created it), made if missing, and refused if a symlink leads it out of the volume.
    """
    target = posixpath.normpath(mount.mount_path)
    read_only = plan.read_only or mount.read_only
    sub = mount.sub_path
    if mount.sub_path_expr:
        sub = expand(mount.sub_path_expr, env)
    if not sub:
        return Bind(plan.source, target, read_only), None
    sub = safe_relative_path(sub, f"{where}.subPath" if mount.sub_path else f"{where}.subPathExpr")
    if plan.files is not None:
        inside = any(f == sub or f.startswith(sub + "/") for f in plan.files)
        if not inside:
            holds = ", ".join(sorted(plan.files)) or "nothing"
            raise MissingObjectError(
                f"{where}.subPath",
                f"{sub!r} is not in volume {plan.name!r}; it holds: {holds}",
            )
        return Bind(plan.source + f"/{sub}", target, read_only), None
    create = "1" if plan.writable else "0"
    line = f"fl_subpath {var} {plan.source.render()} {quote(sub)} {create}"
    return Bind(word(Var(var)), target, read_only), line
