"""Podman: ``podman run --rm`` in the foreground, one container per Pod container.

Kubernetes' command/args map directly: ``command`` becomes ``--entrypoint`` as a JSON array
(the string form is itself parsed as JSON when it starts with ``[``, so the array form is the
only unambiguous one; Podman then ignores the image's CMD, as Kubernetes does), ``args`` follow
the image. ``--network host`` (configurable) keeps Kubernetes' shared localhost between the
containers of a Pod. No ``--init`` by default, as in Kubernetes: a shell as PID 1 ignores
SIGTERM and is killed after the grace period (and Debian installs catatonit only as a
recommendation: ``--init`` failed on the CI machine). Environment values go through an
``--env-file`` the container's function writes (mode 0600, with the shell's builtin ``printf``),
so Secret values never sit in ``podman run``'s argv, which ``ps`` shows for the container's whole
life. Podman reads that file with Go's line scanner (lines end at ``\\n``, a ``\\r`` before it is
dropped, 64 KiB at most per line) and skips lines starting with ``#`` or blanks, so an entry
the file cannot carry exactly (a value with ``\\n`` or ``\\r``, a very long value, a name that
is not identifier-like) stays an ``--env NAME=value`` argument: exact for any byte but NUL, but
visible in ``ps``.
"""

from __future__ import annotations

__all__ = ["PodmanRuntime"]

import json
import re

from flashlink.jobscript import images
from flashlink.jobscript._plan import ContainerRun
from flashlink.jobscript._shell import Var, Word, or_cannot_run, quote, word
from flashlink.jobscript.config import RenderConfig

_FILE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_FILE_VALUE_MAX = 60_000  # bytes; Go's bufio.Scanner refuses lines over 64 KiB


def _fits_file(name: str, value: str) -> bool:
    """Whether Podman's --env-file reader gives back exactly this entry (module docstring)."""
    return (
        _FILE_NAME.fullmatch(name) is not None
        and "\n" not in value
        and "\r" not in value
        and len(value.encode()) <= _FILE_VALUE_MAX
    )


# imagePullPolicy -> --pull; unset follows Kubernetes: ':latest' or untagged means Always
_PULL = {"Always": "always", "IfNotPresent": "missing", "Never": "never"}


class PodmanRuntime:
    name = "podman"
    forbidden_path_chars = ":"  # -v SRC:DST:OPTS

    def __init__(self, config: RenderConfig) -> None:
        self.config = config
        self.options = config.podman
        self.executable = self.options.executable

    def env_problem(self, name: str, value: str) -> str | None:
        return None

    def functions(self, run_id: str) -> list[str]:
        return [
            f"FL_RUN_ID={run_id}-$$ FL_PULL='' FL_CTR_ID=''",
            "# Signal the container, never the podman client: a SIGTERM while it starts the",
            "# container made it exit 0 or 126 and leave the container behind (measured, 4.3.1).",
            "fl_runtime_term() {",
            "    local i",
            "    for ((i = 0; i < 600; i++)); do",
            '        "$FL_RUNTIME" kill --signal TERM "$FL_CTR_ID" >/dev/null 2>&1 && return 0',
            '        kill -0 "$1" 2>/dev/null || return 0',
            "        sleep 0.1",
            "    done",
            "}",
            "fl_runtime_kill() {",
            '    "$FL_RUNTIME" kill --signal KILL "$FL_CTR_ID" >/dev/null 2>&1',
            '    kill -KILL "$1" 2>/dev/null',
            "}",
            "fl_runtime_cleanup() {",
            "    # --rm removed every container that ended; only a stopped job can leave one",
            "    fl_stopping || return 0",
            "    local n ids=()",
            '    for n in "${FL_INIT_NAMES[@]}" "${FL_MAIN_NAMES[@]}"; do',
            '        ids+=("fl-$FL_RUN_ID-$n")',
            "    done",
            '    "$FL_RUNTIME" rm --force --ignore --time 0 "${ids[@]}" >/dev/null 2>&1',
            "}",
        ]

    def image_function(self, function: str, image: str, pull_policy: str | None) -> list[str]:
        found = images.candidates(image, self.config.images, sif=False)
        if found:
            # an override names an image already in the node's store
            ref, pull = found[0], "missing"
        else:
            ref = image
            if pull_policy in _PULL:
                pull = _PULL[pull_policy]
            else:
                suffix = images.split_reference(image)[2]
                pull = "always" if suffix in ("", ":latest") else "missing"
            if not self.config.images.registry_fallback and pull != "never":
                pull = "never"
        return [f"{function}() {{ FL_IMAGE={quote(ref)}; FL_PULL={pull}; return 0; }}"]

    def _env_file(self, run: ContainerRun) -> Word:
        return word(Var("FL_SCRATCH"), f"/env.{run.name}")

    def prepare(self, run: ContainerRun) -> list[str]:
        # unique on the node while it runs: the pod's uid prefix and this script's pid
        lines = [f'FL_CTR_ID="fl-$FL_RUN_ID-"{quote(run.name)}']
        in_file = [f"{name}={value}" for name, value in run.env if _fits_file(name, value)]
        if in_file:
            entries = " ".join(quote(entry) for entry in in_file)
            lines.append(
                or_cannot_run(
                    f"(umask 077 && printf '%s\\n' {entries} >{self._env_file(run).render()})",
                    run.name,
                    "ContainerCannotRun",
                    f"cannot write the environment file of container {run.name}",
                )
            )
        return lines

    def _env_flags(self, run: ContainerRun) -> list[Word]:
        flags = []
        if any(_fits_file(name, value) for name, value in run.env):
            flags += [word("--env-file"), self._env_file(run)]
        for name, value in run.env:
            if not _fits_file(name, value):
                flags += [word("--env"), word(f"{name}={value}")]
        return flags

    def command(self, run: ContainerRun) -> list[Word]:
        opts = self.options
        argv = [
            word(Var("FL_RUNTIME")),
            word("run"),
            word("--rm"),
            word("--name"),
            word(Var("FL_CTR_ID")),
            word(f"--network={opts.network}"),
            word("--pull"),
            word(Var("FL_PULL")),
        ]
        if opts.init:
            argv.append(word("--init"))
        if run.command is not None:
            argv += [word("--entrypoint"), word(json.dumps(list(run.command)))]
        if run.working_dir:
            argv += [word("--workdir"), word(run.working_dir)]
        argv += self._env_flags(run)
        for bind in run.binds:
            argv += [
                word("--volume"),
                bind.source + f":{bind.target}" + (":ro" if bind.read_only else ""),
            ]
        if opts.enforce_limits and run.cpu_limit is not None:
            argv.append(word(f"--cpus={run.cpu_limit}"))
        if opts.enforce_limits and run.memory_limit is not None:
            argv.append(word(f"--memory={run.memory_limit}b"))
        if run.gpus:
            argv += [word("--device"), word(opts.gpu_device)]
        if run.run_as_user is not None:
            user = str(run.run_as_user)
            if run.run_as_group is not None:
                user += f":{run.run_as_group}"
            argv += [word("--user"), word(user)]
        if run.read_only_root:
            argv.append(word("--read-only"))
        argv += [word(f) for f in opts.extra_flags]
        argv.append(word(Var("FL_IMAGE")))
        argv += [word(a) for a in (run.args or ())]
        return argv
