"""A local coturn TURN server for tests (Debian's ``turnserver``).

With ``iceTransportPolicy: 'relay'`` every media packet of a call goes
through it, so a relay placed in front of it (tests/support/udp_impair.py)
sees, delays and drops all of them. Loopback only; its own config file so
Debian's defaults (syslog, /var/run pidfile) stay out of the way.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.server import free_port


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stun_ping(port: int, timeout: float = 0.3) -> bool:
    """Send a STUN Binding request; True when the server answers."""
    txid = os.urandom(12)
    msg = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + txid
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(msg, ("127.0.0.1", port))
            data, _ = s.recvfrom(2048)
        except OSError:
            return False
    return data[8:20] == txid


@dataclass
class TurnServer:
    workdir: Path
    user: str = "bondline"
    password: str = "bondline-test"
    realm: str = "bondline.test"
    port: int = field(default_factory=free_udp_port)
    # Where relayed sockets live: 127.0.0.1 for browser-to-browser calls, the
    # host end of a veth pair to reach a Janus in its own namespace (tests/support/janus.py).
    relay_ip: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None
    # Log every allocation, permission, channel binding and refresh (for a test that must explain a dead call).
    verbose: bool = False

    @property
    def log_path(self) -> Path:
        return self.workdir / "turnserver.log"

    def start(self, timeout: float = 15.0) -> TurnServer:
        exe = shutil.which("turnserver")
        if exe is None:
            raise RuntimeError("coturn's turnserver is not installed (scripts/install-system-deps.sh installs it)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "turnserver.conf"
        conf.write_text("\n".join([
            f"listening-port={self.port}",
            "listening-ip=127.0.0.1",
            f"relay-ip={self.relay_ip}",
            # The CLI and TLS listeners are not needed; their ports could collide between tests.
            "no-cli", "no-tls", "no-dtls", f"alt-listening-port={free_port()}",
            "allow-loopback-peers",
            "lt-cred-mech",
            f"user={self.user}:{self.password}",
            f"realm={self.realm}",
            "fingerprint",
            f"pidfile={self.workdir / 'turnserver.pid'}",
            f"log-file={self.log_path}",
            "simple-log",
            "no-stdout-log",
            *(["verbose"] if self.verbose else []),
        ]) + "\n")
        log = open(self.workdir / "turnserver.stderr", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"turnserver exited with {self.proc.returncode}")
            if stun_ping(self.port):
                return self
        self.stop()
        raise RuntimeError("turnserver did not answer STUN in time")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None
