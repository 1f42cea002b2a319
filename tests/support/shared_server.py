"""One real server for a whole test module, where tests do not need a fresh database.

Starting ``bondline serve`` costs seconds (migrations, imports); tests that
each create their own session can share one process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
