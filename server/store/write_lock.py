"""A fair write lock shared by every process writing one SQLite file.

SQLite lets one writer in at a time. A writer that finds the file locked
waits in SQLite's busy handler, which sleeps and polls (1, 2, 5 ... 100 ms),
so with ``serve --workers 2`` each writer often slept well past the moment
the other had committed (docs/performance.md, "Telemetry ingest"). Taking an
``flock`` on a file beside the database around each ingest transaction
queues the ingest writers in the kernel instead: a waiter wakes the moment
the other commits. SQLite's busy handler is left for the rare API writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import Engine


class WriteLock:
    """Exclusive ``flock`` on ``<database>-writelock``; ``flock`` releases the
    GIL while it waits, so the event loop runs on meanwhile."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def write_lock_for(engine: Engine) -> WriteLock | None:
    """The lock for a SQLite file; None for PostgreSQL (no single writer) and
    for in-memory SQLite (one process)."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return WriteLock(Path(database).with_name(Path(database).name + "-writelock"))
