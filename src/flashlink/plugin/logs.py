"""Container logs for ``/getLogs``: kubelet's options on the files a job script writes.

The job script writes ``containers/NAME/log`` with an RFC 3339 UTC timestamp before every line
(``timestamp_logs``, on by default in the plugin), which makes every option exact:

- ``Tail`` N: the last N lines (0 = all);
- ``SinceSeconds``/``SinceTime``: only lines written at or after that moment (lines without
  a timestamp are kept: nothing says they are older);
- ``Timestamps``: keep the per-line timestamps, else strip them;
- ``Bytes`` (``LimitBytes``): stop after that many bytes of output, as the kubelet does
  (the *first* N bytes of what the other options select);
- ``Follow``: after the existing lines, keep sending new ones until the container has
  terminated and its log is drained;
- ``Previous``: refused by the caller; a batch job never restarts a container.

Options apply in the kubelet's order: tail, then since, then the byte limit.
"""

from __future__ import annotations

__all__ = ["LogCursor", "LogOptions", "log_options"]

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from flashlink.kube import LogOpts

_CHUNK = 64 * 1024
_STAMP = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:[.,](\d{1,9}))?Z ")


@dataclass(frozen=True)
class LogOptions:
    tail: int
    limit: int
    timestamps: bool
    since: float | None  # epoch seconds


def log_options(opts: LogOpts, now: float) -> LogOptions:
    """The options of a request, with ``SinceSeconds`` turned into a moment."""
    since: float | None = None
    if opts.since_seconds > 0:
        since = now - opts.since_seconds
    elif opts.since_time is not None:
        moment = opts.since_time
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        since = moment.timestamp()
    return LogOptions(
        tail=max(opts.tail, 0),
        limit=max(opts.limit_bytes, 0),
        timestamps=opts.timestamps,
        since=since,
    )


def _stamp(line: bytes) -> tuple[float | None, int]:
    """(epoch seconds, length of the prefix incl. its space) of a timestamped line."""
    match = _STAMP.match(line)
    if match is None:
        return None, 0
    whole = datetime.strptime(match[1].decode(), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    fraction = float("0." + match[2].decode()) if match[2] else 0.0
    return whole.timestamp() + fraction, match.end()


def _tail_offset(path: Path, lines: int) -> int:
    """Offset of the start of the last ``lines`` lines (a final line without newline counts)."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        if end == 0:
            return 0
        f.seek(end - 1)
        pos = end - 1 if f.read(1) == b"\n" else end  # ignore the final newline
        seen = 0
        while pos > 0:
            start = max(0, pos - _CHUNK)
            f.seek(start)
            block = f.read(pos - start)
            idx = len(block)
            while True:
                idx = block.rfind(b"\n", 0, idx)
                if idx < 0:
                    break
                seen += 1
                if seen == lines:
                    return start + idx + 1
            pos = start
        return 0


class LogCursor:
    """Reads one container log incrementally, applying the options line by line."""

    def __init__(self, path: Path, options: LogOptions) -> None:
        self.path = path
        self.options = options
        self.offset: int | None = None  # decided at the first read (tail needs the file)
        self.sent = 0
        self._partial = b""

    @property
    def exhausted(self) -> bool:
        """The byte limit is reached: nothing more will be sent."""
        return self.options.limit > 0 and self.sent >= self.options.limit

    def read(self, final: bool) -> bytes:
        """Whatever new output the options let through; ``final`` flushes a last partial line."""
        if self.exhausted:
            return b""
        try:
            with open(self.path, "rb") as f:
                return self._read(f, final)
        except FileNotFoundError:  # the container has not started yet
            return b""

    def _read(self, f: BinaryIO, final: bool) -> bytes:
        if self.offset is None:
            self.offset = _tail_offset(self.path, self.options.tail) if self.options.tail else 0
        f.seek(self.offset)
        out = bytearray()
        eof = False
        while not self.exhausted:
            block = f.read(_CHUNK)
            if not block:
                eof = True
                break
            self.offset += len(block)
            data = self._partial + block
            cut = data.rfind(b"\n") + 1
            self._partial = data[cut:]
            out += self._lines(data[:cut])
            if len(out) >= _CHUNK * 4:
                break  # let the caller send it: a huge log is streamed, not buffered
        if final and eof and self._partial and not self.exhausted:
            out += self._lines(self._partial)
            self._partial = b""
        return bytes(out)

    def _lines(self, data: bytes) -> bytes:
        opts = self.options
        if opts.since is None and opts.timestamps:
            return self._limit(data)  # the common case: the bytes as written
        out = bytearray()
        start = 0
        while start < len(data):  # lines end at b"\n" only: a '\r' progress bar is one line
            end = data.find(b"\n", start)
            end = len(data) if end < 0 else end + 1
            line, start = data[start:end], end
            moment, cut = _stamp(line)
            if opts.since is not None and moment is not None and moment < opts.since:
                continue
            out += line if opts.timestamps else line[cut:]
        return self._limit(bytes(out))

    def _limit(self, data: bytes) -> bytes:
        if self.options.limit > 0:
            data = data[: self.options.limit - self.sent]
        self.sent += len(data)
        return data
