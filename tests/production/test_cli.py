"""``flashlink production`` as a user runs it, without services: bad requests, status."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from flashlink.cli import app
from flashlink.production import Journal

runner = CliRunner()


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "request.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _two_jobs(tmp_path: Path, out: Path) -> Path:
    """A request of two 5-event jobs without a reference, written to ``tmp_path``."""
    return _write(
        tmp_path,
        {
            "name": "x",
            "event": {"kind": "gun"},
            "events": 10,
            "events_per_job": 5,
            "output": str(out),
            "reference": {"events": 0},
        },
    )


def test_run_refuses_a_bad_request_before_anything(tmp_path: Path) -> None:
    bad = _write(
        tmp_path,
        {
            "name": "x",
            "event": {"kind": "gun"},
            "events": -1,
            "events_per_job": 1,
            "output": str(tmp_path / "out"),
        },
    )
    result = runner.invoke(app, ["production", "run", str(bad), "--plugin", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert "events: Input should be greater than 0" in result.output
    assert not (tmp_path / "out").exists()


def test_run_names_an_unreachable_plugin(tmp_path: Path) -> None:
    good = _write(
        tmp_path,
        {
            "name": "x",
            "event": {"kind": "gun"},
            "events": 10,
            "events_per_job": 5,
            "output": str(tmp_path / "out"),
        },
    )
    result = runner.invoke(app, ["production", "run", str(good), "--plugin", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    output = " ".join(result.output.split())  # rich wraps long lines
    assert "POST http://127.0.0.1:9/create failed" in output
    assert "is the plugin running?" in output


def test_status_from_the_output_directory(tmp_path: Path) -> None:
    out = tmp_path / "out"
    request = _two_jobs(tmp_path, out)
    (out / "jobs" / "j0000").mkdir(parents=True)
    (out / "jobs" / "j0000" / "done.json").write_text("{}")
    journal = Journal(out)
    journal.append("submit", key="j0000", attempt=1, name="x-j0000-a1", uid="u0")
    journal.append("end", key="j0000", attempt=1, phase="Succeeded")
    journal.append("submit", key="j0001", attempt=1, name="x-j0001-a1", uid="u1")
    result = runner.invoke(app, ["production", "status", str(request)], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split()[1:] for line in result.output.splitlines() if line}
    assert lines["j0000"][1] == "done"
    assert lines["j0001"][1] == "submitted"
    assert "1/2 done; 2 submissions" in result.output


def test_journal_survives_a_cut_line(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append("submit", key="j0000", attempt=1)
    with journal.path.open("a") as f:
        f.write('{"event": "end", "key"')  # a kill in the middle of a write
    assert journal.open_attempts()["j0000"]["attempt"] == 1
    assert journal.attempts("j0000") == 1


def test_cancel_says_which_pods_the_plugin_did_not_delete(tmp_path: Path) -> None:
    out = tmp_path / "out"
    request = _two_jobs(tmp_path, out)
    journal = Journal(out)
    journal.append("submit", key="j0000", attempt=1, name="x-j0000-a1", uid="u0")
    journal.append("submit", key="j0001", attempt=2, name="x-j0001-a2", uid="u1")
    # nothing listens on port 9: a plugin that cannot be reached must not read as "cancelled 0"
    result = runner.invoke(
        app, ["production", "cancel", str(request), "--plugin", "http://127.0.0.1:9"]
    )
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "cancelled 0 pod(s); the plugin did not delete 2: x-j0000-a1" in output
    assert "x-j0001-a2" in output
    assert "run cancel again" in output
    assert set(journal.open_attempts()) == {"j0000", "j0001"}  # still open: nothing was lost
