"""HAProxy from Debian's package in front of several ``bondline serve``
nodes, run with the configuration docs/deploy.md shows: the test reads it
from the document and changes only the ports, so the recipe is the one
tested."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.server import free_port

DEPLOY_DOC = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
_BLOCK = re.compile(r"```haproxy\n(# haproxy\.cfg.*?)```", re.S)


def haproxy_binary() -> str | None:
    """Debian installs it in /usr/sbin, off a non-root PATH."""
    return shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if Path(p).exists()), None)


def documented_config() -> str:
    m = _BLOCK.search(DEPLOY_DOC.read_text())
    assert m, "docs/deploy.md has no ```haproxy block starting '# haproxy.cfg'"
    return m.group(1)


def config_for(front_port: int, node_ports: list[int]) -> str:
    """The documented configuration with this run's ports: the frontend's,
    and one ``server`` line per node (the document's lines are the model)."""
    cfg = documented_config()
    cfg, n = re.subn(r"(\n\s*bind 127\.0\.0\.1:)\d+", rf"\g<1>{front_port}", cfg)
    assert n == 1, "expected one 'bind 127.0.0.1:PORT' line"
    servers = re.findall(r"\n(\s*)server (\S+) 127\.0\.0\.1:\d+ (.*)", cfg)
    assert servers, "expected 'server NAME 127.0.0.1:PORT ...' lines"
    indent, _, options = servers[0]
    lines = "".join(f"\n{indent}server node{i + 1} 127.0.0.1:{p} {options}" for i, p in enumerate(node_ports))
    cfg = re.sub(r"(\n\s*server \S+ 127\.0\.0\.1:\d+ .*)+", lambda _m: lines, cfg, count=1)
    return cfg


@dataclass
class HAProxy:
    node_ports: list[int]
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> HAProxy:
        binary = haproxy_binary()
        assert binary, "haproxy is not installed: run scripts/install-system-deps.sh"
        cfg = self.workdir / "haproxy.cfg"
        cfg.write_text(config_for(self.port, self.node_ports))
        check = subprocess.run([binary, "-c", "-f", str(cfg)], capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        log = open(self.workdir / "haproxy.log", "ab")  # noqa: SIM115 - owned by the process
        # -db: stay in the foreground, so the test owns the process.
        self.proc = subprocess.Popen([binary, "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.workdir / "haproxy.log").read_text()
            try:
                if httpx.get(self.base + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("haproxy did not start:\n" + (self.workdir / "haproxy.log").read_text())

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None
