"""Run a real ``bondline serve`` process for integration tests.

Tests talk to it over real sockets on 127.0.0.1, can kill -9 it and start
it again on the same database, exactly as an operator's machine would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ADMIN_KEY = "test-admin-key"


def isolated_env() -> dict[str, str]:
    """This process's environment without any BONDLINE_* variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BONDLINE_")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    db_url: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    # Extra ``bondline serve`` options, e.g. ["--workers", "2"].
    args: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_KEY}"}

    def start(self, timeout: float = 60.0) -> ServerProcess:
        # The caller's own BONDLINE_* settings must not reach a test server:
        # each test says what it runs with, and nothing else (isolated_env).
        env = isolated_env()
        env.update(
            {
                "BONDLINE_DATABASE_URL": self.db_url,
                "BONDLINE_ADMIN_API_KEY": ADMIN_KEY,
                "PYTHONUNBUFFERED": "1",
                # No scheduled pruning behind a test's back: the retention
                # tests turn it on when they mean it.
                "BONDLINE_RETENTION_INTERVAL_MINUTES": "0",
            }
        )
        env.update(self.env)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--port", str(self.port), *self.args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            try:
                if httpx.get(self.base + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log_path.read_text()}")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def create_session(self, client_code: str = "C-0001", clinician: str = "clin@example.org") -> dict:
        r = httpx.post(
            self.base + "/api/v1/sessions",
            json={"clinician": clinician, "client_code": client_code, "platform": "test"},
            headers=self.admin_headers,
        )
        r.raise_for_status()
        data: dict = r.json()
        data["tokens"] = {p["role"]: p["token"] for p in data["participants"]}
        return data


def stored(srv: ServerProcess, session_id: int, role: str = "clinician") -> list[dict[str, Any]]:
    """A participant's samples as the server's API returns them."""
    r = httpx.get(f"{srv.base}/api/v1/sessions/{session_id}/samples", params={"role": role},
                  headers=srv.admin_headers, timeout=10)
    r.raise_for_status()
    out: list[dict[str, Any]] = r.json()
    return out
