"""Shared fixtures: a database on each backend and a real server process.

PostgreSQL: ``BONDLINE_TEST_POSTGRES`` names the server (``make test`` sets
it to the local one). Each test gets a fresh database created on it. When
the variable is set and the server cannot be reached the run fails at once,
loudly; when it is unset (or "off") PostgreSQL cases are skipped with that
reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ServerProcess

PG_ENV = "BONDLINE_TEST_POSTGRES"


def _pg_admin_url() -> str | None:
    url = os.environ.get(PG_ENV, "").strip()
    return None if url in ("", "off") else url


def pytest_sessionstart(session: pytest.Session) -> None:
    url = _pg_admin_url()
    if url is None:
        return
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("select 1")
    except Exception as e:  # noqa: BLE001 - any failure to reach it is fatal here
        pytest.exit(f"{PG_ENV}={url} is set but PostgreSQL is not reachable: {e}", returncode=3)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL on each backend."""
    if request.param == "sqlite":
        yield str(tmp_path / "bondline.db")
        return
    admin = _pg_admin_url()
    if admin is None:
        pytest.skip(f"{PG_ENV} is not set: PostgreSQL cases not run")
    import psycopg

    name = "bl_test_" + uuid.uuid4().hex[:12]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin.rpartition("/")
    yield f"{base}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return str(tmp_path / "bondline.db")


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[type[ServerProcess]]:
    """Start real server processes; all are stopped at teardown."""
    started: list[ServerProcess] = []

    def make(db_url: str, env: dict[str, str] | None = None) -> ServerProcess:
        srv = ServerProcess(db_url=db_url, log_path=tmp_path / f"server-{len(started)}.log", env=env or {})
        started.append(srv)
        return srv.start()

    yield make  # type: ignore[misc]
    for srv in started:
        srv.stop()


@pytest.fixture
def server(server_factory, db_url: str) -> ServerProcess:  # type: ignore[no-untyped-def]
    """A running server on a fresh database, once per backend."""
    return server_factory(db_url)


@pytest.fixture
def sqlite_server(server_factory, sqlite_url: str) -> ServerProcess:  # type: ignore[no-untyped-def]
    """A running server on a fresh SQLite file (for tests that need only one backend)."""
    return server_factory(sqlite_url)


# Ground-truth tests compare what a real call measured with what the test
# imposed on the link; CPU or disk pressure left behind by earlier tests
# (servers shutting down, databases being dropped) shows up in them as real
# lateness. They run first, on a quiet machine.
GROUND_TRUTH_FILES = ("tests/test_sidecar_ground_truth.py", "tests/test_plugin_ground_truth.py")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    first = [i for i in items if i.nodeid.startswith(GROUND_TRUTH_FILES)]
    rest = [i for i in items if not i.nodeid.startswith(GROUND_TRUTH_FILES)]
    items[:] = first + rest
