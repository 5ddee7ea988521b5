"""Apptainer (and Singularity): ``exec`` when the Pod sets ``command``, else ``run``.

Kubernetes' command/args semantics map onto an image built from OCI layers as follows
(Apptainer writes the image's ENTRYPOINT and CMD into the SIF's runscript):

- ``command`` set: ``apptainer exec IMAGE command... args...`` (entrypoint and cmd ignored);
- only ``args``: ``apptainer run IMAGE args...`` (the runscript runs ENTRYPOINT with the args
  instead of CMD);
- neither: ``apptainer run IMAGE``.

The environment is passed as ``APPTAINERENV_NAME=value`` in the runtime's own environment: the
container's function declares them ``local -x`` before ``fl_run``, so they reach only that
container's runtime and never appear on any command line (an ``env NAME=value`` prefix would show
Secret values in ``ps`` until it execs). Apptainer 1.4 writes these into
``/.inject-apptainer-env.sh`` as ``export NAME="value"``, escaping only ``"``, and sources it
(measured: ``$HOME`` and backticks in a value were expanded, ``--env-file`` values too, even
single-quoted), so backslashes, ``$`` and backticks are backslash-escaped here and every byte but
NUL then arrives exactly. A name that is not a shell identifier makes that file fail to source
and silently drops *every* variable (measured), so such names are refused; ``HOME`` cannot be
overridden this way ("not permitted").
With ``--containall`` (the default) each container gets private /tmp and /var/tmp under
``--workdir`` in the job's scratch area: the default in-memory session directory is limited to
64 MiB (``sessiondir max size``), too small for ML payloads.
"""

from __future__ import annotations

__all__ = ["ApptainerRuntime"]

import re

from flashlink.jobscript import images
from flashlink.jobscript._plan import ContainerRun
from flashlink.jobscript._shell import Var, Word, or_cannot_run, quote, word, words
from flashlink.jobscript.config import RenderConfig

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOUBLE_QUOTE_SPECIAL = re.compile(r"([\\$`])")
_URI_SCHEMES = (
    "docker://",
    "oras://",
    "library://",
    "shub://",
    "http://",
    "https://",
    "docker-archive:",
    "oci-archive:",
    "docker-daemon:",
)


def _escape(value: str) -> str:
    """Undo Apptainer's double-quote evaluation of injected values (see the module docstring)."""
    if "\\" not in value and "$" not in value and "`" not in value:
        return value
    return _DOUBLE_QUOTE_SPECIAL.sub(lambda m: "\\" + m.group(1), value)


class ApptainerRuntime:
    name = "apptainer"
    forbidden_path_chars = ":,"  # --bind SRC:DST:OPTS[,SRC:DST...]

    def __init__(self, config: RenderConfig) -> None:
        self.config = config
        self.options = config.apptainer
        self.executable = self.options.executable
        self._flags = self._static_flags()  # the same for every container

    def env_problem(self, name: str, value: str) -> str | None:
        if not _IDENTIFIER.fullmatch(name):
            return "Apptainer can only set variables whose names are shell identifiers"
        if name == "HOME":
            return "Apptainer does not let a container's HOME be overridden"
        if "\x80" in value or "\x81" in value:
            # found by the hypothesis test: its shell parser (mvdan.cc/sh) uses U+0080 and
            # U+0081 internally; U+0080 made the injection fail ("reached EOF without closing
            # quote"), dropping every variable, and a leading U+0081 vanished (measured)
            return "Apptainer's environment injection cannot carry the characters U+0080 and U+0081"
        return None

    def _cache_lines(self) -> list[str]:
        """Settings and the fetch function of the flashlink image cache, when configured."""
        images_config = self.config.images
        if not images_config.cache_url:
            return []
        # imported here: flashlink.images pulls in its web stack, needed only with a cache
        from flashlink.images.jobside import fetch_function  # noqa: PLC0415

        token = quote(images_config.cache_token or "")
        node_cache = (
            quote(images_config.node_cache_dir)
            if images_config.node_cache_dir
            else '"$FL_SCRATCH_AREA/flashlink-sif-cache"'
        )
        return [
            f"FL_IMAGES_URL={quote(images_config.cache_url)}",
            f"FL_IMAGES_TOKEN=${{FLASHLINK_IMAGES_TOKEN:-{token}}}",
            f"FL_IMAGES_CACHE=${{FLASHLINK_IMAGES_CACHE:-{node_cache}}}",
            *fetch_function().strip("\n").splitlines(),
        ]

    def functions(self, run_id: str) -> list[str]:
        return [
            *self._cache_lines(),
            # apptainer forwards signals to the container (its shim init does, as PID 1)
            'fl_runtime_term() { kill -TERM "$1" 2>/dev/null; }',
            'fl_runtime_kill() { kill -KILL "$1" 2>/dev/null; }',
            "fl_runtime_cleanup() { :; }",
        ]

    def image_function(self, function: str, image: str, pull_policy: str | None) -> list[str]:
        found = images.candidates(image, self.config.images, sif=True)
        uris = [c for c in found if c.startswith(_URI_SCHEMES)]
        paths = [c for c in found if c not in uris]
        lines = [f"{function}() {{"]
        for path in paths:
            lines.append(f"    if [ -e {quote(path)} ]; then FL_IMAGE={quote(path)}; return 0; fi")
        if self.config.images.cache_url and not uris:
            wait = self.config.images.cache_wait_seconds
            lines += [
                '    if FL_IMAGE=$(flashlink_fetch_image "$FL_IMAGES_URL" "$FL_IMAGES_TOKEN" '
                f'{quote(image)} "$FL_IMAGES_CACHE" {wait} 2>>"$FL_JOB_DIR/job.log"); then',
                "        return 0",
                "    fi",
            ]
        if uris:
            lines.append(f"    FL_IMAGE={quote(uris[0])}; return 0")
        elif self.config.images.registry_fallback:
            lines.append(f"    FL_IMAGE={quote('docker://' + image)}; return 0")
        else:
            tried = ", ".join(paths) or "no local image sources are configured"
            lines.append(f"    fl_log {quote(f'no local image for {image} (tried: {tried})')}")
            lines.append("    return 1")
        lines.append("}")
        return lines

    def _workdir(self, run: ContainerRun) -> Word:
        return word(Var("FL_SCRATCH"), f"/work/{run.name}")

    def prepare(self, run: ContainerRun) -> list[str]:
        env = [(f"APPTAINERENV_{name}", _escape(value)) for name, value in run.env]
        if self.options.cache_dir:
            env.append(("APPTAINER_CACHEDIR", self.options.cache_dir))
        # Function-local and exported: the runtime started by fl_run inherits them, the next
        # container's function does not, and no value is ever an argument (ps shows arguments).
        lines = [f"local -x {name}={quote(value)}" for name, value in env]
        if self.options.containall:
            lines.append(
                or_cannot_run(
                    f"mkdir -p -- {self._workdir(run).render()}",
                    run.name,
                    "ContainerCannotRun",
                    f"cannot create the work directory of container {run.name}",
                )
            )
        return lines

    def _gpu_flags(self, run: ContainerRun) -> list[str]:
        flags = []
        for flag, policy, vendor in (
            ("--nv", self.options.nvidia, "nvidia.com/"),
            ("--rocm", self.options.rocm, "amd.com/"),
        ):
            wanted = any(k.startswith(vendor) for k in run.gpus)
            if policy == "always" or (policy == "auto" and wanted):
                flags.append(flag)
        return flags

    def _static_flags(self) -> list[Word]:
        opts = self.options
        simple = [
            ("--userns", opts.userns),
            ("--containall", opts.containall),
            ("--cleanenv", opts.cleanenv),
            ("--no-home", opts.no_home),
            ("--no-init", opts.no_init),
            ("--no-privs", opts.no_privs),
            ("--unsquash", opts.unsquash),
        ]
        return words(*(flag for flag, on in simple if on))

    def command(self, run: ContainerRun) -> list[Word]:
        opts = self.options
        argv = [word(Var("FL_RUNTIME"))]
        argv += words("exec" if run.command is not None else "run")
        argv += self._flags
        if opts.fakeroot or run.run_as_user == 0:
            argv += words("--fakeroot")
        if opts.writable_tmpfs and not run.read_only_root:
            argv += words("--writable-tmpfs")
        if opts.containall:
            argv += [word("--workdir"), self._workdir(run)]
        argv += words(*self._gpu_flags(run))
        if run.working_dir:
            argv += words("--pwd", run.working_dir)
        for bind in run.binds:
            spec = bind.source + f":{bind.target}" + (":ro" if bind.read_only else "")
            argv += [word("--bind"), spec]
        argv += words(*opts.extra_flags)
        argv.append(word(Var("FL_IMAGE")))
        argv += words(*(run.command or ()), *(run.args or ()))
        return argv
