"""Rendered scripts run for real by bash, under Apptainer and under Podman.

Each test checks what a user (or interLink) observes: logs, exit codes, the state records in the
job directory (also while the job runs), files in volumes. The same assertions hold for both
runtimes.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from ._pods import config_map, container, pod, request, secret
from .conftest import Runner, read_states, read_text, wait_for


def _scratch(job_dir: Path) -> Path:
    """The job's scratch directory, as its job.log names it."""
    line = next(x for x in (job_dir / "job.log").read_text().splitlines() if "(scratch " in x)
    return Path(line.split("(scratch ")[1].split(",")[0])


def test_init_containers_run_in_order_and_share_an_empty_dir(runner: Runner) -> None:
    p = pod(
        container(
            command=["sh", "-c", "cat /initdata/b"],
            volumeMounts=[{"name": "work", "mountPath": "/initdata"}],
        ),
        init=(
            container(
                "init1",
                command=["sh", "-c", "sleep 1; echo a > /initdata/a"],
                volumeMounts=[{"name": "work", "mountPath": "/initdata"}],
            ),
            container(
                "init2",
                command=["sh", "-c", "cat /initdata/a >> /initdata/b; echo init2 >&2"],
                volumeMounts=[{"name": "work", "mountPath": "/initdata"}],
            ),
        ),
        volumes=({"name": "work", "emptyDir": {}},),
    )
    done = runner.run(p)
    assert done.rc == 0, done.stderr + done.job_log
    assert done.text("main") == "a\n"
    assert done.text("init2") == "init2\n"  # stderr goes to the log too
    assert [done.exit_code(n) for n in ("init1", "init2", "main")] == [0, 0, 0]
    first, second = (done.states[n].state.terminated for n in ("init1", "init2"))
    assert first is not None
    assert second is not None
    assert first.finished_at is not None
    assert second.started_at is not None
    assert second.started_at >= first.finished_at
    assert done.pod is not None
    assert (done.pod.phase, done.pod.exit_code) == ("Succeeded", 0)


def test_a_failing_init_container_stops_the_pod(runner: Runner) -> None:
    p = pod(
        container(command=["sh", "-c", "echo main ran"]),
        container("other", command=["sh", "-c", "echo other ran"]),
        init=(
            container("init1", command=["sh", "-c", "echo failing; exit 3"]),
            container("init2", command=["sh", "-c", "echo init2 ran"]),
        ),
    )
    done = runner.run(p)
    assert done.rc == 3
    assert (done.exit_code("init1"), done.reason("init1")) == (3, "Error")
    assert done.text("init1") == "failing\n"
    for name in ("init2", "main", "other"):
        assert done.exit_code(name) == 3
        assert done.reason(name) == "InitContainerFailed"
        assert done.logs[name] == b""  # never started
        terminated = done.states[name].state.terminated
        assert terminated is not None
        assert terminated.message == "init container init1 failed with exit code 3"
    assert done.pod is not None
    assert (done.pod.phase, done.pod.reason) == (
        "Failed",
        "InitContainerFailed",
    )


def test_main_containers_run_in_parallel_with_live_states(runner: Runner) -> None:
    p = pod(
        container(
            "ok",
            command=["sh", "-c", "echo started; until [ -e /w/go ]; do sleep 0.1; done; echo ok"],
            volumeMounts=[{"name": "w", "mountPath": "/w"}],
        ),
        container("bad", command=["sh", "-c", "echo bad >&2; exit 7"]),
        volumes=({"name": "w", "emptyDir": {}},),
    )
    proc, job, job_dir = runner.start(p)
    names = ("ok", "bad")

    def bad_done_while_ok_runs() -> bool:
        states = read_states(job_dir, names)
        return (
            len(states) == 2
            and states["bad"].state.terminated is not None
            and states["ok"].state.running is not None
        )

    # live: `bad` has ended and `ok` still runs, and its log already shows its first line
    wait_for(bad_done_while_ok_runs, 30, "bad terminated while ok runs")
    assert (job_dir / "containers/ok/log").read_text() in ("", "started\n")
    wait_for(lambda: read_text(job_dir / "containers/ok/log") == "started\n", 30, "ok's first line")
    # let `ok` finish by writing into the shared emptyDir from the host side of the job
    (_scratch(job_dir) / "volumes/0/go").touch()
    done = runner.finish(proc, job, job_dir)
    assert done.rc == 7
    assert (done.exit_code("ok"), done.reason("ok")) == (0, "Completed")
    assert (done.exit_code("bad"), done.reason("bad")) == (7, "Error")
    assert done.text("ok") == "started\nok\n"
    assert done.pod is not None
    assert (done.pod.phase, done.pod.exit_code) == ("Failed", 7)


def test_command_and_args_follow_kubernetes(runner: Runner) -> None:
    p = pod(
        container("neither"),
        container("args", args=["one", "two words"]),
        container("command", command=["/entrypoint.sh", "explicit"]),
        container("both", command=["echo"], args=["just", "echo"]),
    )
    done = runner.run(p)
    assert done.rc == 0, done.job_log
    assert done.text("neither") == "entrypoint: default-arg\n"  # image ENTRYPOINT + CMD
    assert done.text("args") == "entrypoint: one two words\n"  # args replace CMD
    assert done.text("command") == "entrypoint: explicit\n"  # command replaces both
    assert done.text("both") == "just echo\n"


NASTY = [
    "plain",
    "a 'single' \"double\" `id` $(id) $HOME ${HOME} \\ back\\slash",
    "line1\nline2\n\nend with newline\n",
    "tab\there; semi; && || | > < * ? [a] ~ # !",
    "non-ASCII: é ü ß 中文 🚀",
    " leading and trailing spaces ",
    "",
    "$$ $( $(X) $$(X)",
]


def test_env_and_args_arrive_byte_exact(runner: Runner) -> None:
    env = [{"name": f"V{i}", "value": value} for i, value in enumerate(NASTY)]
    names = " ".join(f'"$V{i}"' for i in range(len(NASTY)))
    script = f'printf "%s\\0" {names} "$@"'
    p = pod(container(command=["sh", "-c", script, "sh"], args=NASTY, env=env))
    done = runner.run(p)
    assert done.rc == 0, done.job_log
    # values and args get Kubernetes' $(VAR) expansion: unknown references stay, $$ becomes $
    expected = [v.replace("$$", "$").encode() for v in NASTY]
    assert done.logs["main"].split(b"\0")[:-1] == expected + expected


def _command_lines() -> list[bytes]:
    lines = []
    for proc in Path("/proc").iterdir():
        try:
            lines.append((proc / "cmdline").read_bytes())
        except OSError:  # gone meanwhile, or not a process
            continue
    return lines


def test_secret_values_never_appear_on_a_command_line(runner: Runner) -> None:
    value = f"s3cr3t-{os.getpid()}-{os.urandom(6).hex()}"
    p = pod(
        container(
            command=[
                "sh",
                "-c",
                'echo "started ${#TOKEN}"; until [ -e /w/go ]; do sleep 0.1; done',
            ],
            env=[{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "t"}}}],
            volumeMounts=[{"name": "w", "mountPath": "/w"}],
        ),
        volumes=({"name": "w", "emptyDir": {}},),
    )
    proc, job, job_dir = runner.start(request(p, secrets=(secret("s", {"t": value.encode()}),)))
    log = job_dir / "containers/main/log"
    wait_for(lambda: read_text(log).startswith("started"), 60, "the container to start")
    leaked = [line for line in _command_lines() if value.encode() in line]
    (_scratch(job_dir) / "volumes/0/go").touch()
    done = runner.finish(proc, job, job_dir)
    assert done.rc == 0, done.job_log
    assert done.text("main") == f"started {len(value)}\n"  # the value did arrive
    assert leaked == []  # ps of the node never shows it


def test_env_from_objects_and_the_downward_api(runner: Runner) -> None:
    p = pod(
        container(
            command=[
                "sh",
                "-c",
                'printf "%s|" "$CM_A" "$S_TOKEN" "$NAME" "$UID_" "$KEY" "$PASS" "$MEM" "$MIX"',
            ],
            envFrom=[
                {"configMapRef": {"name": "cm"}, "prefix": "CM_"},
                {"secretRef": {"name": "s"}, "prefix": "S_"},
            ],
            env=[
                {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "UID_", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                {"name": "KEY", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "A"}}},
                {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "s", "key": "TOKEN"}}},
                {
                    "name": "MEM",
                    "valueFrom": {
                        "resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}
                    },
                },
                {"name": "MIX", "value": "$(NAME)/$(CM_A)"},
            ],
            resources={"limits": {"memory": "64Mi"}},
        )
    )
    req = request(
        p,
        config_maps=(config_map("cm", {"A": "from $cm"}),),
        secrets=(secret("s", {"TOKEN": b"t0k'3n"}),),
    )
    done = runner.run(req)
    assert done.rc == 0, done.job_log
    assert (
        done.text("main")
        == f"from $cm|t0k'3n|hello|{p.metadata.uid}|from $cm|t0k'3n|64|hello/from $cm|"
    )


def test_working_dir(runner: Runner) -> None:
    done = runner.run(pod(container(command=["pwd"], workingDir="/etc")))
    assert (done.rc, done.text("main")) == (0, "/etc\n")


def test_config_map_and_secret_volumes(runner: Runner) -> None:
    binary = bytes(range(256))
    value = "k: v\nquote: \"q\" 'q' $HOME `x`\n"
    p = pod(
        container(
            command=[
                "sh",
                "-c",
                "cd /etc/app && find . -type f | sort && stat -c '%a %n' conf/app.yaml /app.yaml; "
                "cat conf/app.yaml; cat /app.yaml; cat /all/other /all/blob.bin; "
                "stat -c '%a' /sec/password; cat /sec/password; "
                "touch /etc/app/new 2>/dev/null && echo WRITABLE || echo read-only",
            ],
            volumeMounts=[
                {"name": "cfg", "mountPath": "/etc/app", "readOnly": True},
                {"name": "cfg", "mountPath": "/app.yaml", "subPath": "conf/app.yaml"},
                {"name": "all", "mountPath": "/all"},
                {"name": "sec", "mountPath": "/sec"},
            ],
        ),
        volumes=(
            {
                "name": "cfg",
                "configMap": {
                    "name": "app-cfg",
                    "defaultMode": 0o644,
                    "items": [{"key": "app.yaml", "path": "conf/app.yaml", "mode": 0o400}],
                },
            },
            {"name": "all", "configMap": {"name": "app-cfg"}},
            {"name": "sec", "secret": {"secretName": "creds"}},
        ),
    )
    req = request(
        p,
        config_maps=(
            config_map("app-cfg", {"app.yaml": value, "other": "x\n"}, binary={"blob.bin": binary}),
        ),
        secrets=(secret("creds", {"password": b"s3cr3t"}),),
    )
    done = runner.run(req)
    assert done.rc == 0, done.job_log + done.stderr
    expected = (
        ("./conf/app.yaml\n400 conf/app.yaml\n400 /app.yaml\n" + value + value + "x\n").encode()
        + binary
        + b"600\ns3cr3t"
        + b"read-only\n"
    )
    assert done.logs["main"] == expected
    assert b"s3cr3t" not in (done.job_dir / "job.log").read_bytes()


def test_projected_and_downward_api_volumes(runner: Runner) -> None:
    p = pod(
        container(
            command=[
                "sh",
                "-c",
                "cd /var/run/secrets/kubernetes.io/serviceaccount && cat token ca.crt namespace; "
                "echo; cat /info/labels /info/name",
            ],
            volumeMounts=[
                {
                    "name": "kube-api-access-x",
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                },
                {"name": "info", "mountPath": "/info"},
            ],
        ),
        volumes=(
            {
                "name": "kube-api-access-x",
                "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]},
            },
            {
                "name": "info",
                "downwardAPI": {
                    "items": [
                        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                    ]
                },
            },
        ),
    )
    rendered = config_map(
        "kube-api-access-x", {"token": "abc.def", "ca.crt": "PEM\n", "namespace": "default"}
    )
    done = runner.run(request(p, projected=(rendered,)))
    assert done.rc == 0, done.job_log
    assert done.text("main") == 'abc.defPEM\ndefault\napp="demo"hello'


def test_empty_dirs_host_paths_and_claims(runner: Runner, shared_tmp: Path) -> None:
    host = shared_tmp / "host"
    claim = shared_tmp / "claim"
    claim.mkdir()
    (claim / "data.txt").write_text("dataset\n")
    config = runner.with_config(
        volumes={
            "host_path_prefixes": [str(shared_tmp)],
            "persistent_volume_claims": {"datasets": str(claim)},
        }
    )
    p = pod(
        container(
            command=[
                "sh",
                "-c",
                "echo out > /host/result.txt; cat /data/data.txt; "
                "echo m > /mem/m && cat /mem/m; grep -q ' /mem ' /proc/mounts && echo mounted; "
                "touch /ro/x 2>/dev/null && echo WRITABLE || echo read-only",
            ],
            volumeMounts=[
                {"name": "host", "mountPath": "/host"},
                {"name": "data", "mountPath": "/data"},
                {"name": "mem", "mountPath": "/mem"},
                {"name": "scratch", "mountPath": "/ro", "readOnly": True},
            ],
        ),
        volumes=(
            {"name": "host", "hostPath": {"path": str(host), "type": "DirectoryOrCreate"}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "datasets"}},
            {"name": "mem", "emptyDir": {"medium": "Memory"}},
            {"name": "scratch", "emptyDir": {}},
        ),
    )
    done = runner.run(p, config)
    assert done.rc == 0, done.job_log + done.stderr
    assert done.text("main") == "dataset\nm\nmounted\nread-only\n"
    assert (host / "result.txt").read_text() == "out\n"


def test_a_failed_volume_fails_every_container(runner: Runner, shared_tmp: Path) -> None:
    config = runner.with_config(volumes={"host_path_prefixes": [str(shared_tmp)]})
    p = pod(
        container(volumeMounts=[{"name": "h", "mountPath": "/h"}]),
        volumes=(
            {"name": "h", "hostPath": {"path": str(shared_tmp / "absent"), "type": "Directory"}},
        ),
    )
    done = runner.run(p, config)
    assert done.rc == 128
    assert (done.exit_code("main"), done.reason("main")) == (128, "FailedMount")
    assert f"hostPath {shared_tmp / 'absent'} is not a usable Directory" in done.job_log


def test_a_missing_image_is_reported(runner: Runner) -> None:
    done = runner.run(pod(container(image="no-such-image:1"), container("ok", command=["true"])))
    assert done.reason("ok") == "Completed"
    assert done.exit_code("main") != 0
    assert done.rc != 0


def test_sigterm_stops_the_pod_and_still_writes_every_state(runner: Runner) -> None:
    p = pod(
        container("sleeper", command=["sleep", "300"]),
        container(
            "trapper",
            command=["sh", "-c", "trap 'echo got TERM; exit 0' TERM; echo ready; sleep 300 & wait"],
        ),
        terminationGracePeriodSeconds=2,
    )
    proc, job, job_dir = runner.start(p)
    # "ready": the trap is set (a "running" record is written just before the runtime starts)
    wait_for(
        lambda: read_text(job_dir / "containers/trapper/log") == "ready\n", 30, "trapper ready"
    )
    wait_for(
        lambda: "running" in read_text(job_dir / "containers/sleeper/state.json"),
        30,
        "sleeper running",
    )
    scratch_dir = _scratch(job_dir)
    assert scratch_dir.is_dir()
    os.kill(proc.pid, signal.SIGTERM)
    done = runner.finish(proc, job, job_dir, timeout=30)
    assert done.pod is not None
    assert (done.pod.phase, done.pod.reason) == ("Failed", "Terminated")
    assert done.rc in (137, 143)  # the first failing container's code
    assert done.reason("sleeper") == "Terminated"
    assert (done.exit_code("trapper"), done.reason("trapper")) == (0, "Completed")
    assert done.exit_code("sleeper") in (137, 143)  # SIGKILL after the grace, or SIGTERM
    assert done.text("trapper") == "ready\ngot TERM\n"
    assert not scratch_dir.exists()  # cleaned up
    if runner.name == "podman":  # and no container left behind by the SIGKILL path
        names = subprocess.run(
            [runner.config.podman.executable, "ps", "--all", "--format", "{{.Names}}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.split()
        assert not [n for n in names if n.startswith(f"fl-11111111-{proc.pid}-")]


def test_active_deadline_seconds(runner: Runner) -> None:
    p = pod(
        container(command=["sleep", "300"]),
        activeDeadlineSeconds=2,
        terminationGracePeriodSeconds=1,
    )
    done = runner.run(p, timeout=30)
    assert done.reason("main") == "DeadlineExceeded"
    assert done.pod is not None
    assert done.pod.reason == "DeadlineExceeded"
    assert done.rc != 0


def test_timestamped_logs(runner: Runner) -> None:
    done = runner.run(
        pod(container(command=["sh", "-c", "echo one; echo two >&2; sleep 0.3; printf three"])),
        runner.with_config(timestamp_logs=True),
    )
    lines = done.text("main").splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["one", "two", "three"]
    for line in lines:
        stamp = line.split(" ", 1)[0]
        assert len(stamp) == len("2026-11-22T10:00:00.123456Z")
        assert stamp.endswith("Z")
        assert stamp[10] == "T"
