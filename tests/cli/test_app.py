from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

import flashlink
from flashlink.cli import app


def test_version_prints_the_package_version() -> None:
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0, result.output
    assert f"flashlink {flashlink.__version__}" in result.output


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    assert "version" in result.output


def test_console_script_is_installed() -> None:
    # The entry point in pyproject.toml, not just the typer object, must work.
    exe = Path(sys.executable).with_name("flashlink")
    out = subprocess.run([exe, "version"], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.startswith(f"flashlink {flashlink.__version__} ")
