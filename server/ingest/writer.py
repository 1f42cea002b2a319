"""Group-commit writer: the only path by which telemetry reaches the store.

Every connection hands its validated batch to one writer per process and
waits; the writer drains whatever has queued, inserts it all in one
transaction, commits, and only then answers each waiter. At 1 Hz from
thousands of participants this turns thousands of one-row transactions a
second into a few dozen larger ones (see ../shared/ingest-field-notes.md).

Exactly-once lives in the schema, not here: samples are keyed by
(participant, seq) and collector events by (participant, client_key), and
both are inserted with ON CONFLICT DO NOTHING.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from itertools import chain

from sqlalchemy import exc, update
from sqlalchemy.engine import Connection, Engine

from server.ingest.grouping import GroupedWorker
from server.ingest.headline import HEADLINE_COLUMNS
from server.store import tables as t
from server.store.write_lock import write_lock_for

log = logging.getLogger("bondline.ingest")

# The order to_rows() builds rows in: the headline figures sit between the
# sample's own fields and its JSON.
SAMPLE_COLUMNS = (
    "participant_id",
    "seq",
    "t_ms",
    "interval_ms",
    "source",
    "received_ms",
    *HEADLINE_COLUMNS,
    "data",
)
EVENT_COLUMNS = (
    "session_id",
    "participant_id",
    "kind",
    "origin",
    "t_ms",
    "end_ms",
    "severity",
    "client_key",
    "data",
)

SampleRow = tuple[object, ...]
EventRow = tuple[object, ...]


@dataclass
class WriteResult:
    stored: int
    duplicates: int
    events_stored: int


@dataclass
class _Request:
    samples: list[SampleRow]
    events: list[EventRow]
    future: asyncio.Future[WriteResult] = field(repr=False)
    start_session: int | None = None


def _insert_sql(table: str, columns: tuple[str, ...], paramstyle: str, conflict: str, rows: int = 1) -> str:
    mark = "?" if paramstyle == "qmark" else "%s"
    row = "(" + ", ".join([mark] * len(columns)) + ")"
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([row] * rows)} "
            f"ON CONFLICT {conflict} DO NOTHING")


class _Shortfall(Exception):
    """Some rows of a shared statement were duplicates: who sent them is not
    known, so the transaction is redone one request at a time."""


class IngestWriter(GroupedWorker[_Request]):
    """Serialises telemetry writes of one process into group commits."""

    def __init__(self, engine: Engine, *, max_group_rows: int = 5000, commit_interval_s: float = 0.02) -> None:
        # One thread: SQLite allows one writer anyway, and ordering per
        # connection is then the order batches were queued.
        super().__init__("bondline-writer")
        self._engine = engine
        self._max_group_rows = max_group_rows
        # Commits start at most this often. Each commit costs a fixed ~1 ms
        # of CPU and an fsync; at thousands of 1 Hz participants, letting a
        # group gather for up to 20 ms cut the writer's CPU several-fold for
        # at most 20 ms more ack latency (docs/performance.md). A lone batch
        # after a quiet spell still commits at once.
        self._commit_interval_s = commit_interval_s
        self._paramstyle = engine.dialect.paramstyle
        # Bound parameters per statement: SQLite >= 3.32 allows 32,766,
        # PostgreSQL 65,535. Chunks stay well below either.
        self._chunk_rows = 500
        # SQLite: multi-row statements (see _insert_shared). psycopg instead
        # pipelines an executemany of one-row statements, and spent 7x the
        # CPU binding one 9,000-parameter statement (117 vs 25 us a row,
        # measured on 3,200 rows; docs/performance.md).
        self._multirow = engine.dialect.name == "sqlite"
        self._sql_cache: dict[tuple[str, int], str] = {}
        self._lock = write_lock_for(engine)
        self.commits = 0
        self.rows = 0
        self.slow_commit_s = 2.0

    async def stop(self) -> None:
        await super().stop()
        if self._lock is not None:
            self._lock.close()

    async def write(self, samples: list[SampleRow], events: list[EventRow], *,
                    start_session: int | None = None) -> WriteResult:
        """Queue rows and return once they are committed. ``start_session``
        marks that session as started (if it is not yet) in the same
        transaction: the first collector to connect starts a session, and
        with SQLite a write of its own would compete for the write lock."""
        fut: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        self._submit(_Request(samples, events, fut, start_session))
        return await fut

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        last_start = 0.0
        while True:
            group = [await self._queue.get()]
            rows = len(group[0].samples)
            wait = last_start + self._commit_interval_s - loop.time()
            if wait > 0 and rows < self._max_group_rows:
                await asyncio.sleep(wait)
            last_start = loop.time()
            while rows < self._max_group_rows and not self._queue.empty():
                req = self._queue.get_nowait()
                group.append(req)
                rows += len(req.samples)
            group = [r for r in group if not r.future.cancelled()]
            if not group:
                continue
            results = await self._commit_with_retry(loop, group)
            for req, res in zip(group, results, strict=True):
                if req.future.done():
                    continue
                if isinstance(res, BaseException):
                    req.future.set_exception(res)
                else:
                    req.future.set_result(res)

    async def _commit_with_retry(
        self, loop: asyncio.AbstractEventLoop, group: list[_Request]
    ) -> list[WriteResult | BaseException]:
        delay = 0.05
        failed_since: float | None = None
        while True:
            try:
                results: list[WriteResult | BaseException] = list(await self._watched_commit(loop, group))
                if failed_since is not None:
                    log.warning("ingest store available again after %.1fs; delayed acks sent",
                                time.monotonic() - failed_since)
                return results
            except (exc.OperationalError, exc.InterfaceError) as e:
                # Database busy, locked or unreachable: keep the waiters (and
                # their connections) and try again; acks are only delayed.
                failed_since = failed_since if failed_since is not None else time.monotonic()
                log.warning("ingest store unavailable, retrying in %.2fs: %s", delay, e.orig or e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except exc.DBAPIError as e:
                if len(group) == 1:
                    return [e]
                # One request's rows broke the transaction (for example its
                # participant was deleted meanwhile): isolate it.
                out: list[WriteResult | BaseException] = []
                for req in group:
                    out.extend(await self._commit_with_retry(loop, [req]))
                return out

    async def _watched_commit(self, loop: asyncio.AbstractEventLoop, group: list[_Request]) -> list[WriteResult]:
        """Run one commit; say so in the log while it waits on a locked or
        stalled store (SQLite's busy timeout waits silently otherwise)."""
        fut = loop.run_in_executor(self._executor, self._commit, group)
        waited = 0.0
        while True:
            done, _ = await asyncio.wait({fut}, timeout=self.slow_commit_s)
            if done:
                if waited:
                    log.warning("ingest store answered after %.1fs; delayed acks sent", waited)
                return fut.result()
            waited += self.slow_commit_s
            log.warning("ingest store busy: a commit has waited %.0fs (database locked or stalled); "
                        "connections are kept and acks delayed", waited)

    def _commit(self, group: list[_Request]) -> list[WriteResult]:
        if self._lock is None:
            return self._commit_group(group)
        with self._lock.held():
            return self._commit_group(group)

    def _commit_group(self, group: list[_Request]) -> list[WriteResult]:
        t0 = time.perf_counter()
        try:
            with self._engine.begin() as conn:
                t1 = time.perf_counter()
                out = self._insert_shared(conn, group)
                self._mark_started(conn, group)
                t2 = time.perf_counter()
        except _Shortfall:
            with self._engine.begin() as conn:
                t1 = time.perf_counter()
                out = [self._insert_one(conn, req) for req in group]
                self._mark_started(conn, group)
                t2 = time.perf_counter()
        took = time.perf_counter() - t0
        if took > 0.25:
            log.info("slow ingest commit: %.0f ms for %d requests (begin %.0f, insert %.0f, commit %.0f)",
                     took * 1000, len(group), (t1 - t0) * 1000, (t2 - t1) * 1000, (time.perf_counter() - t2) * 1000)
        self.commits += 1
        self.rows += sum(len(r.samples) for r in group)
        return out

    # Why whole groups go in as a few multi-row statements: the sqlite3
    # driver releases the GIL around every statement step, and while the
    # event loop thread is busy the writer thread then waits up to the
    # interpreter's switch interval (5 ms) to get it back. One statement per
    # request made a 200-request group take about a second (measured; see
    # docs/performance.md). One statement per 500 rows does not.

    def _insert_shared(self, conn: Connection, group: list[_Request]) -> list[WriteResult]:
        samples = [row for req in group for row in req.samples]
        events = [row for req in group for row in req.events]
        if self._insert_rows(conn, "sample", samples) != len(samples):
            raise _Shortfall
        if self._insert_rows(conn, "event", events) != len(events):
            raise _Shortfall
        return [WriteResult(stored=len(r.samples), duplicates=0, events_stored=len(r.events)) for r in group]

    @staticmethod
    def _mark_started(conn: Connection, group: list[_Request]) -> None:
        ids = sorted({r.start_session for r in group if r.start_session is not None})
        if ids:
            conn.execute(
                update(t.session)
                .where(t.session.c.id.in_(ids), t.session.c.started_ms.is_(None))
                .values(started_ms=now_ms())
            )

    def _insert_one(self, conn: Connection, req: _Request) -> WriteResult:
        stored = self._insert_rows(conn, "sample", req.samples)
        events_stored = self._insert_rows(conn, "event", req.events)
        return WriteResult(stored=stored, duplicates=len(req.samples) - stored, events_stored=events_stored)

    def _insert_rows(self, conn: Connection, table: str, rows: list[SampleRow]) -> int:
        """Insert rows, skipping (participant, key) duplicates; returns how
        many were new."""
        if not rows:
            return 0
        if not self._multirow:
            return int(conn.exec_driver_sql(self._sql(table, 1), rows).rowcount)
        stored = 0
        for i in range(0, len(rows), self._chunk_rows):
            chunk = rows[i: i + self._chunk_rows]
            res = conn.exec_driver_sql(self._sql(table, len(chunk)), tuple(chain.from_iterable(chunk)))
            stored += res.rowcount
        return stored

    def _sql(self, table: str, rows: int) -> str:
        key = (table, rows)
        sql = self._sql_cache.get(key)
        if sql is None:
            if table == "sample":
                sql = _insert_sql("sample", SAMPLE_COLUMNS, self._paramstyle, "(participant_id, seq)", rows)
            else:
                sql = _insert_sql("event", EVENT_COLUMNS, self._paramstyle, "(participant_id, client_key)", rows)
            if len(self._sql_cache) < 2 * self._chunk_rows:
                self._sql_cache[key] = sql
        return sql


def now_ms() -> int:
    return int(time.time() * 1000)
