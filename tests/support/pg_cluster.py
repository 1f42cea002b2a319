"""A throwaway PostgreSQL cluster for one test run, for machines without a
running server: initdb in a temporary directory, started on a free port
(loopback and a private socket directory only), trust authentication, and
stopped and deleted when the run ends.

PostgreSQL refuses to run as root, so as root the cluster belongs to the
``postgres`` system user that Debian's package creates.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.server import free_port


def pg_bindir() -> Path | None:
    """Where initdb and pg_ctl are (Debian keeps them off PATH), newest version first."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return Path(candidates[-1]).parent if candidates else None


@dataclass
class ThrowawayCluster:
    datadir: Path
    port: int
    bindir: Path
    user: str | None

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)

    def start(self) -> ThrowawayCluster:
        out = self._run("initdb", "-D", str(self.datadir / "data"), "-U", "postgres", "-A", "trust",
                        "--no-sync", "-E", "UTF8", "--locale=C")
        if out.returncode != 0:
            raise RuntimeError(f"initdb failed: {out.stdout}{out.stderr}")
        options = (f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c max_connections=200")
        out = self._run("pg_ctl", "-D", str(self.datadir / "data"), "-o", options,
                        "-l", str(self.datadir / "server.log"), "-w", "-t", "60", "start")
        if out.returncode != 0:
            log = (self.datadir / "server.log").read_text() if (self.datadir / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {out.stdout}{out.stderr}{log}")
        return self

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.datadir / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.datadir, ignore_errors=True)


def start_throwaway_cluster() -> ThrowawayCluster:
    bindir = pg_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (no initdb); scripts/install-system-deps.sh installs it")
    user = None
    if os.geteuid() == 0:
        user = "postgres"
    datadir = Path(tempfile.mkdtemp(prefix="bondline-pg-"))
    if user is not None:
        shutil.chown(datadir, user=user)
    return ThrowawayCluster(datadir, free_port(), bindir, user).start()
