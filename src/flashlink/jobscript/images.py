"""Where an image reference is found on a node: the candidates, in order, as pure data.

Resolution happens when the job runs (the files are on the node, not here), in this order:

1. ``[images] overrides``: an explicit local image (or URI) for this reference;
2. a pre-built SIF or sandbox directory in ``[images] image_dir``, named like
   ``busybox_1.36.sif`` (``/`` and ``:`` become ``_``; tried as written and with ``:latest``);
3. an unpacked image in a CVMFS repository laid out like ``unpacked.cern.ch``
   (``<root>/registry.hub.docker.com/library/busybox:1.36``);
4. the registry itself (``docker://`` for Apptainer, a pull for Podman).

The flashlink image cache (``[images] cache_url``, Apptainer only) comes between 3 and 4: the
job asks the cache service for the SIF and downloads it once per node, with a lock and a
checksum check (``flashlink.images.jobside``), falling back to the registry when the service
cannot provide it. A runtime asks :func:`candidates` for the local paths and adds its own
steps, so a new source is one function here and one branch in each runtime's image function.
"""

from __future__ import annotations

__all__ = ["candidates", "image_file_name", "normalize", "split_reference", "unpacked_path"]

import posixpath

from flashlink.jobscript.config import ImagesConfig

_DEFAULT_REGISTRY = "registry.hub.docker.com"


def split_reference(image: str) -> tuple[str, str, str]:
    """(registry, path, tag-or-digest suffix incl. its ':'/'@'), Docker's parsing rules."""
    rest, _, digest = image.partition("@")
    first, _, remainder = rest.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, remainder
    else:
        registry, path = "", rest
    name, colon, tag = path.rpartition(":")
    if colon and "/" not in tag:
        path = name
        suffix = ":" + tag
    else:
        suffix = ""
    if digest:
        suffix += "@" + digest
    return registry, path, suffix


def normalize(image: str) -> str:
    """The full reference: registry, ``library/`` for Docker Hub, ``:latest`` if untagged."""
    registry, path, suffix = split_reference(image)
    registry = registry or _DEFAULT_REGISTRY
    if registry in (_DEFAULT_REGISTRY, "docker.io", "index.docker.io") and "/" not in path:
        path = "library/" + path
    if registry in ("docker.io", "index.docker.io"):
        registry = _DEFAULT_REGISTRY
    return f"{registry}/{path}{suffix or ':latest'}"


def image_file_name(image: str) -> str:
    """The file name stem of a pre-built image: ``ghcr.io/x/y:1`` -> ``ghcr.io_x_y_1``."""
    return image.replace("/", "_").replace(":", "_").replace("@", "_")


def unpacked_path(root: str, image: str) -> str:
    """Where an unpacked-images CVMFS repository keeps ``image``."""
    return posixpath.join(root, normalize(image))


def candidates(image: str, config: ImagesConfig, sif: bool) -> list[str]:
    """Local paths (or URIs) to try for ``image``, most specific first, without duplicates.

    ``sif`` selects file-system images (Apptainer); Podman only takes overrides, which name
    images in its own store.
    """
    out: list[str] = []
    if image in config.overrides:
        out.append(config.overrides[image])
    if sif:
        suffix = split_reference(image)[2]
        tagged = image if suffix else image + ":latest"
        if config.image_dir:
            for ref in dict.fromkeys((image, tagged)):
                stem = posixpath.join(config.image_dir, image_file_name(ref))
                out += [stem + ".sif", stem]
        if config.cvmfs_unpacked:
            out.append(unpacked_path(config.cvmfs_unpacked, image))
    return list(dict.fromkeys(out))
