"""The files of ConfigMap, Secret, projected and downwardAPI volumes, computed at render time.

Keys and ``items`` map to relative paths (checked to stay inside the volume), each with its
mode; contents are bytes (Secrets and ``binaryData`` decoded). The kubelet's formats are kept:
labels and annotations files are ``key="value"`` lines, values quoted like Go's
``strconv.Quote``, sorted, without a final newline (``fieldpath.FormatMap``).
"""

from __future__ import annotations

__all__ = ["Files", "downward_files", "file_mode", "object_files", "projected_files"]

import posixpath
from collections.abc import Mapping

from flashlink.jobscript.env import ObjectStore, field_value, resource_value
from flashlink.jobscript.errors import InvalidPodError, MissingObjectError
from flashlink.jobscript.validate import safe_relative_path
from flashlink.kube import ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Volume

Files = dict[str, tuple[bytes, int]]
"""relative path -> (content, mode)"""


def file_mode(mode: int | None, default: int, where: str) -> int:
    """``mode``, or ``default`` when unset; a value outside 0-0777 names the field."""
    value = default if mode is None else mode
    if not 0 <= value <= 0o777:
        raise InvalidPodError(where, f"{value} is not a file mode; use 0 to 0777 (decimal 0-511)")
    return value


def _key_files(
    data: Mapping[str, bytes],
    items: list[KeyToPath],
    *,
    mode: int,
    optional: bool,
    where: str,
    label: str,
) -> Files:
    """Every key as a file, or only the ``items`` mapping (with per-item modes)."""
    out: Files = {}
    if not items:
        for key in data:
            out[safe_relative_path(key, f"{where} ({label} key)")] = (data[key], mode)
        return out
    for j, item in enumerate(items):
        here = f"{where}.items[{j}]"
        path = safe_relative_path(item.path, f"{here}.path")
        if item.key not in data:
            if optional:
                continue
            raise MissingObjectError(
                f"{here}.key",
                f"{label} has no key {item.key!r}; its keys: {', '.join(sorted(data))}",
            )
        out[path] = (data[item.key], file_mode(item.mode, mode, f"{here}.mode"))
    return out


def object_files(
    store: ObjectStore,
    kind: str,
    name: str,
    items: list[KeyToPath],
    *,
    mode: int,
    optional: bool,
    where: str,
) -> Files:
    """The files of a ``configMap``/``secret`` volume (or projection) of object ``name``."""
    data = store.lookup(kind, name)
    if data is None:
        if optional:
            return {}
        raise MissingObjectError(
            where,
            f"{kind} {name!r} was not supplied and the volume is not optional; interLink sends "
            f"it with the create request (with the CLI, pass --{kind.lower()} FILE)",
        )
    label = f"{kind} {name!r}"
    return _key_files(data, items, mode=mode, optional=optional, where=where, label=label)


_GO_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def _go_quote(value: str) -> str:
    """Go's ``strconv.Quote``, which the kubelet uses to write labels and annotations files."""
    out = []
    for ch in value:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def _format_map(table: Mapping[str, str]) -> str:
    return "\n".join(f"{key}={_go_quote(table[key])}" for key in sorted(table))


def downward_files(pod: Pod, items: list[DownwardAPIVolumeFile], mode: int, where: str) -> Files:
    """The files of a downwardAPI volume (or projection), from the Pod's own fields."""
    out: Files = {}
    for j, item in enumerate(items):
        here = f"{where}.items[{j}]"
        path = safe_relative_path(item.path, f"{here}.path")
        if item.field_ref is not None:
            field_path = item.field_ref.field_path
            if field_path == "metadata.labels":
                value = _format_map(pod.metadata.labels)
            elif field_path == "metadata.annotations":
                value = _format_map(pod.metadata.annotations)
            else:
                value = field_value(pod, item.field_ref, here)
        elif item.resource_field_ref is not None:
            ref = item.resource_field_ref
            if not ref.container_name:
                raise InvalidPodError(
                    f"{here}.resourceFieldRef.containerName", "is required in volumes"
                )
            # resource_value looks the container up by ref.container_name
            value = resource_value(pod, pod.spec.containers[0], ref, here)
        else:
            raise InvalidPodError(here, "needs fieldRef or resourceFieldRef")
        out[path] = (value.encode(), file_mode(item.mode, mode, f"{here}.mode"))
    return out


def projected_files(
    pod: Pod, volume: Volume, store: ObjectStore, rendered: ConfigMap | None, where: str
) -> Files:
    """A projected volume: interLink's rendering when it sent one, else built from the sources.

    interLink renders service-account tokens, which only the API server can mint; without its
    rendering those sources are left out (and the ConfigMap, Secret and downwardAPI ones made).
    """
    projected = volume.projected
    if projected is None:  # pragma: no cover - the caller dispatches on the kind
        raise InvalidPodError(where, "is not a projected volume")
    mode = file_mode(projected.default_mode, 0o644, f"{where}.projected.defaultMode")
    out: Files = {}
    if rendered is not None:
        item_modes: dict[str, int] = {}
        for source in projected.sources:
            for sub in (source.config_map, source.secret):
                for item in sub.items if sub else []:
                    if item.mode is not None:
                        item_modes[posixpath.normpath(item.path)] = item.mode
        for key, data in rendered.files().items():
            path = safe_relative_path(key, f"{where} (projectedvolumemaps key)")
            out[path] = (data, file_mode(item_modes.get(path), mode, f"{where}.projected"))
        return out
    for j, source in enumerate(projected.sources):
        here = f"{where}.projected.sources[{j}]"
        if source.config_map is not None:
            cm = source.config_map
            out |= object_files(
                store,
                "ConfigMap",
                cm.name,
                cm.items,
                mode=mode,
                optional=bool(cm.optional),
                where=f"{here}.configMap",
            )
        elif source.secret is not None:
            sec = source.secret
            out |= object_files(
                store,
                "Secret",
                sec.name,
                sec.items,
                mode=mode,
                optional=bool(sec.optional),
                where=f"{here}.secret",
            )
        elif source.downward_api is not None:
            out |= downward_files(pod, source.downward_api.items, mode, f"{here}.downwardAPI")
    return out
