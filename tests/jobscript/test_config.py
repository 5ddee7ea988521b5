from __future__ import annotations

import pytest

from flashlink.jobscript import InvalidConfigError, parse_config
from flashlink.jobscript.images import candidates, image_file_name, normalize


def test_toml_build_config() -> None:
    config = parse_config(
        """
        runtime = "podman"
        timestamp_logs = true
        [podman]
        executable = "/usr/bin/podman"
        network = "none"
        [images]
        overrides = { "busybox:1.36" = "localhost/bb:1" }
        [volumes]
        host_path_prefixes = ["/data", "/scratch"]
        persistent_volume_claims = { "datasets" = "/shared/datasets" }
        """
    )
    assert config.runtime == "podman"
    assert config.timestamp_logs
    assert config.podman.network == "none"
    assert config.volumes.host_path_prefixes == ("/data", "/scratch")
    assert config.images.overrides == {"busybox:1.36": "localhost/bb:1"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('runtime = "docker"', "runtime: Input should be 'apptainer' or 'podman'"),
        ("[apptainer]\nuserns = 3", "apptainer.userns"),
        ("[apptainer]\nuser_ns = true", "apptainer.user_ns: Extra inputs are not permitted"),
        ("[volumes]\nfuse_timeout_seconds = 0", "volumes.fuse_timeout_seconds"),
        ("runtime = ", "config: is not valid TOML"),
    ],
)
def test_config_errors_name_the_key(text: str, message: str) -> None:
    with pytest.raises(InvalidConfigError) as info:
        parse_config(text)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("image", "normal"),
    [
        ("busybox", "registry.hub.docker.com/library/busybox:latest"),
        ("ubuntu:22.04", "registry.hub.docker.com/library/ubuntu:22.04"),
        ("docker.io/rclone/rclone", "registry.hub.docker.com/rclone/rclone:latest"),
        ("gitlab-registry.cern.ch/a/b:v1", "gitlab-registry.cern.ch/a/b:v1"),
        ("localhost:5000/x", "localhost:5000/x:latest"),
        ("x@sha256:abc", "registry.hub.docker.com/library/x@sha256:abc"),
    ],
)
def test_normalize(image: str, normal: str) -> None:
    assert normalize(image) == normal


def test_file_names_and_podman_candidates() -> None:
    assert image_file_name("ghcr.io/o/x:1") == "ghcr.io_o_x_1"
    config = parse_config({"images": {"overrides": {"a": "localhost/a:1"}, "image_dir": "/i"}})
    assert candidates("a", config.images, sif=False) == ["localhost/a:1"]
    assert candidates("b", config.images, sif=False) == []
