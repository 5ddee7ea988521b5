"""Run commands in the tiny test image with the container runtimes the services provide.

The services (``ci/services/apptainer.sh``, ``podman.sh``, ``bwrap.sh``) write where each runtime
and the image are (``APPTAINER``/``PODMAN``/``BWRAP``, ``TEST_IMAGE_SIF``/``TEST_IMAGE_PODMAN``/
``TEST_IMAGE_DIR``); these helpers turn a command into the argv that runs it there, the same way
for every runtime, so tests can parametrize over them. The image (``ci/services/image.sh``) is
busybox with ``/entrypoint.sh`` (prints ``entrypoint:`` and its arguments), a default argument
``default-arg`` and ``FLASHLINK_TEST_IMAGE=1`` in its environment (Podman and the SIF only).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from servicekit._service import Service

__all__ = [
    "CI_USER",
    "DEFAULT_ARG",
    "ENTRYPOINT",
    "IMAGE_ENV",
    "RUNTIMES",
    "as_user",
    "exec_argv",
    "run",
    "run_argv",
]

RUNTIMES = ("apptainer", "podman", "bwrap")
CI_USER = os.environ.get("FLASHLINK_CI_USER", "flashci")
ENTRYPOINT = "/entrypoint.sh"
DEFAULT_ARG = "default-arg"
IMAGE_ENV = ("FLASHLINK_TEST_IMAGE", "1")


def as_user(argv: Sequence[str], user: str) -> list[str]:
    """``argv`` run as ``user`` (root: unchanged); runuser sets HOME, USER and LOGNAME."""
    if user == "root":
        return list(argv)
    # A root session's XDG_RUNTIME_DIR (/run/user/0) would send rootless podman there.
    return ["runuser", "-u", user, "--", "env", "-u", "XDG_RUNTIME_DIR", *argv]


def _bwrap_root(image_dir: Path) -> list[str]:
    # The image's top-level entries one by one on bwrap's own tmpfs root, not the directory as /:
    # binds of host paths (/srv/...) need mount points, which a read-only image cannot take.
    args: list[str] = []
    for entry in sorted(os.scandir(image_dir), key=lambda e: e.name):
        dest = f"/{entry.name}"
        if entry.name in {"dev", "proc", "tmp"}:
            continue
        if entry.is_symlink():
            args += ["--symlink", os.readlink(entry.path), dest]
        else:
            args += ["--ro-bind", entry.path, dest]
    return [*args, "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]


def exec_argv(
    service: Service,
    argv: Sequence[str],
    *,
    binds: Sequence[Path] = (),
    stdin: bool = False,
) -> list[str]:
    """The argv that runs ``argv`` in the test image, bypassing its entrypoint.

    Each path in ``binds`` is mounted read-write at the same path inside.
    """
    if not argv:
        raise ValueError("exec_argv needs a command to run; got an empty argv")
    paths = [str(p) for p in binds]
    if service.name == "apptainer":
        bind_args = [arg for p in paths for arg in ("--bind", p)]
        return [service["APPTAINER"], "exec", *bind_args, service["TEST_IMAGE_SIF"], *argv]
    if service.name == "podman":
        bind_args = [arg for p in paths for arg in ("--volume", f"{p}:{p}")]
        return [
            service["PODMAN"],
            "run",
            "--rm",
            # The only network mode rootless podman has here (slirp4netns lacks /dev/net/tun).
            "--network=none",
            *(["--interactive"] if stdin else []),
            *bind_args,
            "--entrypoint",
            "",
            service["TEST_IMAGE_PODMAN"],
            *argv,
        ]
    if service.name == "bwrap":
        bind_args = [arg for p in paths for arg in ("--bind", p, p)]
        return [
            service["BWRAP"],
            *_bwrap_root(Path(service["TEST_IMAGE_DIR"])),
            "--unshare-all",
            "--die-with-parent",
            *bind_args,
            "--",
            *argv,
        ]
    raise ValueError(f"no container runtime {service.name!r}; known: {', '.join(RUNTIMES)}")


def run_argv(service: Service, args: Sequence[str] = ()) -> list[str]:
    """The argv that runs the image's default program (entrypoint/runscript) with ``args``."""
    if service.name == "apptainer":
        return [service["APPTAINER"], "run", service["TEST_IMAGE_SIF"], *args]
    if service.name == "podman":
        return [
            service["PODMAN"],
            "run",
            "--rm",
            "--network=none",
            service["TEST_IMAGE_PODMAN"],
            *args,
        ]
    raise ValueError(
        f"{service.name} runs a plain directory, which has no entrypoint; "
        "use exec_argv, or apptainer/podman for entrypoint semantics"
    )


def run(
    argv: Sequence[str],
    *,
    user: str = "root",
    cwd: Path | None = None,
    input: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (as ``user``) and capture its output; never raises on a non-zero exit."""
    if input is None:
        return subprocess.run(
            as_user(argv, user),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    return subprocess.run(
        as_user(argv, user),
        cwd=cwd,
        input=input,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
