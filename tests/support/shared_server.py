"""One real server for a whole test module, where tests do not need a fresh database.

Starting ``bondline serve`` costs seconds (migrations, imports); tests that
each create their own session can share one process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import ServerProcess


@contextmanager
def running_server(workdir: Path, env: dict[str, str] | None = None,
                   db_url: str | None = None) -> Iterator[ServerProcess]:
    """A server on ``db_url`` (default: a fresh SQLite file in ``workdir``)."""
    srv = ServerProcess(db_url=db_url or str(workdir / "bondline.db"), log_path=workdir / "server.log",
                        env=env or {})
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _one_sqlite(module_sqlite_server: ServerProcess) -> ServerProcess:
    return module_sqlite_server


def _one_per_backend(module_server: ServerProcess) -> ServerProcess:
    return module_server


def once_per_module(name: str) -> Any:
    """The ``server`` or ``sqlite_server`` fixture, started once per module
    (and backend) instead of once per test (conftest.py ``module_server``).
    A module opts in with ``server = once_per_module("server")`` only when
    each of its tests creates and reads its own sessions and changes nothing
    server-wide; a test that kills or reconfigures its server asks for
    ``server_factory`` instead. Starting ``bondline serve`` costs seconds."""
    body = {"sqlite_server": _one_sqlite, "server": _one_per_backend}[name]
    return pytest.fixture(scope="module", name=name)(body)
