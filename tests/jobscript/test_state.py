"""Reading back the records a running script writes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flashlink.jobscript import JobScriptError, parse_pod_record, parse_state


def test_states_map_to_container_statuses() -> None:
    waiting = parse_state('{"name":"a","state":"waiting","reason":"PodInitializing"}')
    assert waiting.state.waiting is not None
    assert waiting.state.waiting.reason == "PodInitializing"
    running = parse_state('{"name":"a","state":"running","startedAt":"2026-11-22T10:00:00Z"}')
    assert running.state.running is not None
    assert running.ready
    assert running.state.running.started_at == datetime(2026, 11, 22, 10, tzinfo=UTC)
    done = parse_state(
        '{"name":"a","state":"terminated","exitCode":7,"reason":"Error",'
        '"startedAt":"2026-11-22T10:00:00Z","finishedAt":"2026-11-22T10:00:05Z","message":"m"}'
    )
    assert done.state.terminated is not None
    assert (done.state.terminated.exit_code, done.state.terminated.reason) == (7, "Error")
    assert done.to_wire()["state"]["terminated"]["finishedAt"] == "2026-11-22T10:00:05Z"


@pytest.mark.parametrize(
    "text", ["", "{", '{"name":"a","state":"exploded"}', '{"state":"running"}']
)
def test_bad_records(text: str) -> None:
    with pytest.raises(JobScriptError):
        parse_state(text)


def test_pod_record() -> None:
    record = parse_pod_record(
        '{"uid":"u","phase":"Failed","startedAt":"2026-11-22T10:00:00Z","reason":"InitContainerFailed","exitCode":3}'
    )
    assert (record.phase, record.reason, record.exit_code) == ("Failed", "InitContainerFailed", 3)
