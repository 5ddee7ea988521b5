"""Settings (file + env) and the ``flashlink images`` commands against a running service."""

from __future__ import annotations

import hashlib
import subprocess
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flashlink.cli import app
from flashlink.images.errors import ConfigError
from flashlink.images.settings import load_settings, sample_toml
from images._serve import FLASHLINK, MASTER, ServeProcess, write_config
from servicekit import Service


def test_the_sample_config_is_valid_toml_with_every_default(tmp_path: Path) -> None:
    text = sample_toml()
    data = tomllib.loads(text)
    assert data["build"]["workers"] == 2
    assert "FLASHLINK_IMAGES_AUTH_MASTER_TOKEN" in text
    config = tmp_path / "images.toml"
    config.write_text(text)
    assert load_settings(config, env={}) == load_settings(None, env={})
    result = CliRunner().invoke(app, ["images", "config"])
    assert result.exit_code == 0
    assert tomllib.loads(result.output) == data


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "images.toml",
        {"build": {"workers": 1, "apptainer": "apptainer"}, "store": {"kind": "directory"}},
        {"localhost/*": "podman:{reference}"},
    )
    settings = load_settings(
        config,
        env={
            "FLASHLINK_IMAGES_BUILD_WORKERS": "3",
            "FLASHLINK_IMAGES_BUILD_APPTAINER": "/opt/wrap apptainer",
            "FLASHLINK_IMAGES_AUTH_MASTER_TOKEN": MASTER,
            "FLASHLINK_IMAGES_BUILD_INSECURE_REGISTRIES": '["localhost:5000"]',
        },
    )
    assert settings.build.workers == 3
    assert settings.build.apptainer == ["/opt/wrap", "apptainer"]
    assert settings.build.insecure_registries == ["localhost:5000"]
    assert settings.auth.token() == MASTER
    assert settings.sources[0].source == "podman:{reference}"


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"build": {"workers": 0}}, "build.workers: Input should be greater than or equal to 1"),
        ({"store": {"kind": "s3"}}, "store.bucket: required when store.kind = 's3'"),
        ({"store": {"kind": "nfs"}}, "store.kind: Input should be 'directory' or 's3'"),
        ({"build": {"wokers": 2}}, "build.wokers: Extra inputs are not permitted"),
    ],
)
def test_bad_settings_name_the_field(
    tmp_path: Path, sections: dict[str, dict[str, object]], message: str
) -> None:
    config = write_config(tmp_path / "images.toml", sections, {})
    with pytest.raises(ConfigError) as err:
        load_settings(config, env={})
    assert message in str(err.value)


def test_a_missing_master_token_is_explained() -> None:
    with pytest.raises(ConfigError, match="FLASHLINK_IMAGES_AUTH_MASTER_TOKEN"):
        load_settings(None, env={}).auth.token()


def test_serve_refuses_a_bad_config_with_exit_2(tmp_path: Path) -> None:
    config = write_config(tmp_path / "images.toml", {"store": {"kind": "s3"}}, {})
    result = subprocess.run(
        [FLASHLINK, "images", "serve", "--config", config],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "store.bucket: required" in result.stderr


@pytest.mark.apptainer
def test_token_get_and_meta_commands(apptainer: Service, rootfs: Path, tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "images.toml",
        {
            "store": {"kind": "directory", "path": tmp_path / "store"},
            "build": {
                "apptainer": apptainer["APPTAINER"],
                "workdir": tmp_path / "work",
                "retry_after": 1,
                "allow_registry": False,
            },
        },
        {"test.local/*": f"dir:{rootfs}"},
    )
    service = ServeProcess(config, tmp_path / "serve.log").start()
    try:
        env = {"FLASHLINK_IMAGES_URL": service.url, "FLASHLINK_IMAGES_AUTH_MASTER_TOKEN": MASTER}
        runner = CliRunner()
        minted = runner.invoke(app, ["images", "token", "--ttl", "60"], env=env)
        assert minted.exit_code == 0, minted.output
        token = minted.output.strip()
        assert token.count(".") == 2  # a JWT
        env["FLASHLINK_IMAGES_TOKEN"] = token
        got = runner.invoke(
            app,
            ["images", "get", "test.local/busybox:1", "--cache-dir", str(tmp_path / "c")],
            env=env,
        )
        assert got.exit_code == 0, got.output
        path = Path(got.output.strip().splitlines()[-1])
        assert path.name == hashlib.sha256(path.read_bytes()).hexdigest() + ".sif"
        shown = runner.invoke(app, ["images", "meta", "test.local/busybox:1"], env=env)
        assert shown.exit_code == 0, shown.output
        assert f'"sha256": "{path.stem}"' in shown.output
        both = runner.invoke(app, ["images", "get", "x:1", "-o", "a", "--cache-dir", "b"], env=env)
        assert both.exit_code == 2
        assert "exactly one of --output and --cache-dir" in both.output
        denied = runner.invoke(
            app, ["images", "token"], env={**env, "FLASHLINK_IMAGES_AUTH_MASTER_TOKEN": "wrong" * 4}
        )
        assert denied.exit_code == 1
        assert "needs the master token" in denied.output
    finally:
        service.stop()
