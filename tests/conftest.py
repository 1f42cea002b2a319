"""Shared fixtures: a database on each backend and a real server process.

PostgreSQL: ``BONDLINE_TEST_POSTGRES`` names the server (``make test`` sets
it to the local one). Each test gets a fresh database created on it. When
the variable is set and that server cannot be reached (a fresh machine with
none running), the run starts a throwaway cluster of its own for the run
(tests/support/pg_cluster.py) and says so; if even that fails, the run fails
at once, loudly. When the variable is unset (or "off") PostgreSQL cases are
skipped with that reason.

Fuzzing draws a fresh seed each run, printed in the header;
``BONDLINE_FUZZ_SEED=N`` replays one (tests/support/fuzz.py).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fuzz import FUZZ_SEED, SEED_ENV
from tests.support.gt_seed import gt_line
from tests.support.pg_cluster import ThrowawayCluster, start_throwaway_cluster
from tests.support.server import ServerProcess
from tests.support.shared_server import running_server

PG_ENV = "BONDLINE_TEST_POSTGRES"


def _pg_admin_url() -> str | None:
    url = os.environ.get(PG_ENV, "").strip()
    return None if url in ("", "off") else url


_cluster: ThrowawayCluster | None = None


def _reachable(url: str) -> Exception | None:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("select 1")
    except Exception as e:  # noqa: BLE001 - any failure to reach it is reported
        return e
    return None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _cluster
    url = _pg_admin_url()
    if url is None:
        return
    problem = _reachable(url)
    if problem is None:
        return
    try:
        _cluster = start_throwaway_cluster()
    except Exception as e:  # noqa: BLE001 - any failure to start one is fatal here
        pytest.exit(f"{PG_ENV}={url} is not reachable ({problem}) and no throwaway cluster could be "
                    f"started: {e}", returncode=3)
    print(f"\n{PG_ENV}={url} is not reachable ({str(problem).strip()}); "
          f"using a throwaway PostgreSQL cluster at {_cluster.admin_url} for this run")
    os.environ[PG_ENV] = _cluster.admin_url


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _cluster is not None:
        _cluster.stop()


def _seed_line() -> str:
    return f"fuzz seed: {FUZZ_SEED} (replay with {SEED_ENV}={FUZZ_SEED})"


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [_seed_line(), gt_line()]


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    # Also at the end, where `pytest -q` (no header) shows it next to any failure.
    terminalreporter.write_line(_seed_line())
    terminalreporter.write_line(gt_line())


@contextlib.contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A new, empty database on the test PostgreSQL server, dropped afterwards."""
    admin = _pg_admin_url()
    if admin is None:
        pytest.skip(f"{PG_ENV} is not set: PostgreSQL cases not run")
    import psycopg

    name = "bl_test_" + uuid.uuid4().hex[:12]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL on each backend."""
    if request.param == "sqlite":
        yield str(tmp_path / "bondline.db")
        return
    with fresh_pg_database() as url:
        yield url


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
def two_workers(tmp_path: Path) -> Iterator[ServerProcess]:
    """``bondline serve --workers 2`` on a fresh SQLite file."""
    srv = ServerProcess(db_url=str(tmp_path / "bondline.db"), log_path=tmp_path / "server.log",
                        args=["--workers", "2"]).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def sqlite_server(server_factory, sqlite_url: str) -> ServerProcess:  # type: ignore[no-untyped-def]
    """A running server on a fresh SQLite file (for tests that need only one backend)."""
    return server_factory(sqlite_url)


@pytest.fixture(scope="module")
def module_sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server on a fresh SQLite file for a whole module. A module opts in
    (overriding ``sqlite_server`` with it) only when each of its tests creates
    and reads its own sessions and changes nothing server-wide."""
    with running_server(tmp_path_factory.mktemp("module-sqlite")) as srv:
        yield srv


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``server`` once per module and backend, on the terms of ``module_sqlite_server``."""
    workdir = tmp_path_factory.mktemp(f"module-{request.param}")
    if request.param == "sqlite":
        with running_server(workdir) as srv:
            yield srv
        return
    with fresh_pg_database() as url, running_server(workdir, db_url=url) as srv:
        yield srv


# Ground-truth tests compare what a real call measured with what the test
# imposed on the link; CPU or disk pressure left behind by earlier tests
# (servers shutting down, databases being dropped) shows up in them as real
# lateness. They run first, on a quiet machine.
GROUND_TRUTH_FILES = ("tests/test_sidecar_ground_truth.py", "tests/test_plugin_ground_truth.py",
                      "tests/test_plugin_edges_ground_truth.py", "tests/test_sidecar_browser_truth.py")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    first = [i for i in items if i.nodeid.startswith(GROUND_TRUTH_FILES)]
    rest = [i for i in items if not i.nodeid.startswith(GROUND_TRUTH_FILES)]
    items[:] = first + rest
