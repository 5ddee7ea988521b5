"""Run ``flashlink images serve`` for real (uvicorn in a subprocess) on a free port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

MASTER = "test-master-token-" + "x" * 16
FLASHLINK = Path(sys.executable).with_name("flashlink")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def toml_value(value: object) -> str:
    return json.dumps(str(value) if isinstance(value, Path) else value)


def write_config(path: Path, sections: dict[str, dict[str, object]], rules: dict[str, str]) -> Path:
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
    for match, source in rules.items():
        lines += ["[[sources]]", f"match = {toml_value(match)}", f"source = {toml_value(source)}"]
    path.write_text("\n".join(lines) + "\n")
    return path


class ServeProcess:
    """One service process; ``start()`` waits for /healthz, ``stop()`` ends it by PID."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> ServeProcess:
        env = dict(os.environ, FLASHLINK_IMAGES_AUTH_MASTER_TOKEN=MASTER)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [FLASHLINK, "images", "serve", "--config", self.config, "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the service exited {self.proc.returncode}: {self.log.read_text()}"
                )
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the service did not answer in {timeout} s: {self.log.read_text()}")

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the service is not started")
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def metric(self, name: str, **labels: str) -> float:
        """A sample's value from /metrics (0 when absent)."""
        text = httpx.get(self.url + "/metrics").text
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        prefix = f"{name}{{{want}}} " if labels else f"{name} "
        for line in text.splitlines():
            if line.startswith(prefix):
                return float(line.split()[-1])
        return 0.0
