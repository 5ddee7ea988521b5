"""The two example Pods of the Flash Simulation seed documents, as written, and JuiceFS.

``examples/pods/cvmfs.yaml`` and ``examples/pods/fuse-rclone.yaml`` are the seed Pods
unchanged; only their images are mapped to local ones (no registry here): ``ubuntu:latest``
to the test image plus the host's bash (the Pod runs ``/bin/bash``), ``rclone/rclone`` to
the test image. A fake CVMFS repository directory stands in for /cvmfs; the FUSE volumes are
real mounts: rclone ``mount2`` as in the seed, and JuiceFS with Redis metadata and S3 data,
the flagship's shared cache.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flashlink.cli.jobscript import load_request
from servicekit import Service

from ._pods import container, pod
from .conftest import IMAGE, VENV_BIN, Runner

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pods"


def _fuse_mounts() -> list[str]:
    return [line for line in Path("/proc/mounts").read_text().splitlines() if " fuse" in line]


@pytest.fixture
def bash_image(runner: Runner, tmp_path: Path) -> Iterator[str]:
    """The test image with the host's /bin/bash and its libraries: a stand-in for ubuntu."""
    base = Path(runner.config.images.overrides[IMAGE])
    rootfs = tmp_path / "rootfs"
    source = base if base.is_dir() else Path("/var/cache/flashlink-ci/image/rootfs")
    shutil.copytree(source, rootfs, symlinks=True)
    ldd = subprocess.run(
        ["ldd", "/bin/bash"], capture_output=True, text=True, check=True, timeout=30
    )
    files = ["/bin/bash"] + [w for w in ldd.stdout.split() if w.startswith("/")]
    for f in files:
        target = rootfs / f.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(f).resolve(), target)
    if runner.name == "apptainer":
        yield str(rootfs)  # Apptainer runs a directory ("sandbox") image as it is
        return
    ref = f"localhost/flashlink-test-bash:{uuid.uuid4().hex[:8]}"
    tar = tmp_path / "rootfs.tar"
    with tarfile.open(tar, "w") as archive:
        archive.add(rootfs, arcname=".")
    podman = runner.config.podman.executable
    subprocess.run(
        [podman, "import", "-q", str(tar), ref], check=True, capture_output=True, timeout=120
    )
    yield ref
    subprocess.run([podman, "rmi", "-f", ref], check=False, capture_output=True, timeout=120)


def test_cvmfs_seed_pod(runner: Runner, bash_image: str, shared_tmp: Path) -> None:
    cvmfs = shared_tmp / "cvmfs"
    (cvmfs / "sft.cern.ch" / "lcg").mkdir(parents=True)
    (cvmfs / "sft.cern.ch" / "lcg" / "README").write_text("LCG releases\n")
    config = runner.with_config(
        volumes={"cvmfs_root": str(cvmfs)}, images={"overrides": {"ubuntu:latest": bash_image}}
    )
    done = runner.run(load_request(EXAMPLES / "cvmfs.yaml"), config)
    assert done.rc == 0, done.job_log + done.stderr
    assert "cvmfs" in done.text("main").split()  # `ls /` shows the mount point
    # and the repository is what is mounted there, read-only
    p = pod(
        container(
            image="ubuntu:latest",
            command=[
                "/bin/bash",
                "-c",
                "cat /cvmfs/lcg/README; touch /cvmfs/x 2>/dev/null || echo ro",
            ],
            volumeMounts=[{"name": "sw", "mountPath": "/cvmfs"}],
        ),
        volumes=({"name": "sw", "persistentVolumeClaim": {"claimName": "none"}},),
        annotations={"cvmfs.vk.io/sw": "sft.cern.ch"},
    )
    done = runner.run(p, config)
    assert done.rc == 0, done.job_log
    assert done.text("main").endswith("LCG releases\nro\n")


def test_cvmfs_repository_missing_on_the_node(runner: Runner, shared_tmp: Path) -> None:
    config = runner.with_config(volumes={"cvmfs_root": str(shared_tmp / "no-cvmfs")})
    done = runner.run(load_request(EXAMPLES / "cvmfs.yaml"), config)
    assert (done.rc, done.reason("main")) == (128, "FailedMount")
    assert "CVMFS repository sft.cern.ch for volume my-volume" in done.job_log


def _require_fusermount() -> None:
    if shutil.which("fusermount3") is None:
        pytest.fail(
            "fusermount3 is missing: ./dev setup podman installs fuse3 (rclone mount2 needs it)"
        )


def test_fuse_seed_pod_with_rclone(runner: Runner) -> None:
    _require_fusermount()
    before = _fuse_mounts()
    # the seed script writes these two files into the node's /tmp; remove them afterwards
    leftovers = [p for p in (Path("/tmp/file.txt"), Path("/tmp/rc1one.conf")) if not p.exists()]
    config = runner.with_config(
        images={"overrides": {"rclone/rclone:latest": runner.config.images.overrides[IMAGE]}}
    )
    done = runner.run(load_request(EXAMPLES / "fuse-rclone.yaml"), config)
    assert done.rc == 0, done.job_log + done.stderr
    assert done.text("main") == "hello world\n"
    assert "fuse volume my-fuse-vol mounted" in done.job_log
    assert _fuse_mounts() == before  # unmounted at the end
    for path in leftovers:
        path.unlink(missing_ok=True)


def test_fuse_mount_that_never_comes_up(runner: Runner) -> None:
    p = pod(
        container(volumeMounts=[{"name": "f", "mountPath": "/f"}]),
        volumes=({"name": "f", "emptyDir": {}},),
        annotations={"fuse.vk.io/f": "echo trying; sleep 30"},
    )
    done = runner.run(p, runner.with_config(volumes={"fuse_timeout_seconds": 1}))
    assert (done.rc, done.reason("main")) == (128, "FailedMount")
    assert "fuse volume f was not mounted after 1s" in done.job_log
    assert (done.job_dir / "volumes/f.log").read_text() == "trying\n"


@pytest.mark.s3
@pytest.mark.redis
def test_fuse_juicefs_on_redis_and_s3(runner: Runner, s3: Service, redis: Service) -> None:
    _require_fusermount()
    import boto3

    bucket = f"jfs-{uuid.uuid4().hex[:8]}"
    client: Any = boto3.client(
        "s3",
        endpoint_url=s3["S3_ENDPOINT"],
        region_name=s3["S3_REGION"],
        aws_access_key_id=s3["S3_ACCESS_KEY"],
        aws_secret_access_key=s3["S3_SECRET_KEY"],
    )
    client.create_bucket(Bucket=bucket)
    meta = redis["REDIS_URL"].rsplit("/", 1)[0] + "/7"
    import redis as redis_client

    redis_client.Redis.from_url(meta).flushdb()  # a fresh volume: format keeps an existing one
    juicefs = f"{VENV_BIN}/juicefs"
    subprocess.run(
        [
            juicefs,
            "format",
            "--no-update",
            "--storage",
            "s3",
            "--bucket",
            f"{s3['S3_ENDPOINT']}/{bucket}",
            "--access-key",
            s3["S3_ACCESS_KEY"],
            "--secret-key",
            s3["S3_SECRET_KEY"],
            meta,
            bucket,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    before = _fuse_mounts()
    # in the foreground, so the job's cleanup waits for it to flush and exit after the unmount
    mount = f"exec juicefs mount --no-usage-report '{meta}' \"$MOUNT_POINT\""
    p = pod(
        container(
            command=["sh", "-c", "cat /cache/model.onnx"],
            volumeMounts=[{"name": "cache", "mountPath": "/cache"}],
        ),
        init=(
            container(
                "fill",
                command=["sh", "-c", "echo trained-weights > /cache/model.onnx"],
                volumeMounts=[{"name": "cache", "mountPath": "/cache"}],
            ),
        ),
        volumes=({"name": "cache", "emptyDir": {}},),
        annotations={"fuse.vk.io/cache": mount},
    )
    done = runner.run(p)
    assert done.rc == 0, (
        done.job_log + done.stderr + (done.job_dir / "volumes/cache.log").read_text()
    )
    assert done.text("main") == "trained-weights\n"
    assert _fuse_mounts() == before
    objects = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert any(o["Key"].startswith(f"{bucket}/chunks/") for o in objects)  # the data went to S3
