"""Podman: ``podman run --rm`` in the foreground, one container per Pod container.

Kubernetes' command/args map directly: ``command`` becomes ``--entrypoint`` as a JSON array
(the string form is itself parsed as JSON when it starts with ``[``, so the array form is the
only unambiguous one; Podman then ignores the image's CMD, as Kubernetes does), ``args`` follow
the image. ``--network host`` (configurable) keeps Kubernetes' shared localhost between the
containers of a Pod. No ``--init`` by default, as in Kubernetes: a shell as PID 1 ignores
SIGTERM and is killed after the grace period (and Debian installs catatonit only as a
recommendation: ``--init`` failed on the CI machine). Environment values are argv elements
(``--env NAME=value``), exact for any byte but NUL; an ``--env-file`` cannot carry newlines.
"""

from __future__ import annotations

__all__ = ["PodmanRuntime"]

import json

from flashlink.jobscript import images
from flashlink.jobscript._plan import ContainerRun
from flashlink.jobscript._shell import Var, Word, quote, word
from flashlink.jobscript.config import RenderConfig

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

    def prepare(self, run: ContainerRun) -> list[str]:
        # unique on the node while it runs: the pod's uid prefix and this script's pid
        return [f'FL_CTR_ID="fl-$FL_RUN_ID-"{quote(run.name)}']

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
        for name, value in run.env:
            argv += [word("--env"), word(f"{name}={value}")]
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
