"""Group-commit writer: how live telemetry (collectors, the sidecar) reaches
the store, through the one insert path of server/store/telemetry.py.

Every connection hands its validated batch to one writer per process and
waits; the writer drains whatever has queued, inserts it all in one
transaction, commits, and only then answers each waiter. At 1 Hz from
thousands of participants this turns thousands of one-row transactions a
second into a few dozen larger ones (see ../shared/ingest-field-notes.md).

Exactly-once lives in the schema, not here (server/store/telemetry.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from sqlalchemy import exc
from sqlalchemy.engine import Connection, Engine

from server.ingest.grouping import GroupedWorker
from server.store.telemetry import EventRow, RowInserter, SampleRow, mark_started
from server.store.write_lock import write_lock_for
from server.timeutil import now_ms

log = logging.getLogger("bondline.ingest")


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


def _participant(req: _Request) -> int | None:
    rows = req.samples or req.events
    return rows[0].participant_id if rows else None


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
        self._insert = RowInserter(engine.dialect.name, engine.dialect.paramstyle)
        self._lock = write_lock_for(engine)
        self.commits = 0
        self.rows = 0
        self.slow_commit_s = 2.0
        # Monotonic time since which commits fail or wait (None: they go
        # through); /healthz reports it.
        self.failing_since: float | None = None

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
            try:
                results = await self._commit_with_retry(loop, group)
            except Exception as e:  # noqa: BLE001 - the writer must outlive any one group
                log.exception("ingest writer: a group of %d requests failed", len(group))
                results = [e] * len(group)
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
                self.failing_since = None
                if failed_since is not None:
                    log.warning("ingest store available again after %.1fs; delayed acks sent",
                                time.monotonic() - failed_since)
                return results
            except (exc.OperationalError, exc.InterfaceError) as e:
                # Database busy, locked or unreachable: keep the waiters (and
                # their connections) and try again; acks are only delayed.
                failed_since = failed_since if failed_since is not None else time.monotonic()
                self.failing_since = self.failing_since or failed_since
                log.warning("ingest store unavailable, retrying in %.2fs: %s", delay, e.orig or e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception as e:  # noqa: BLE001 - whatever one request's rows did, the others go on
                # One request's rows broke the transaction (its participant
                # was erased meanwhile, or a value the driver or the store
                # refused): isolate it, so it fails alone and what queued
                # with it, and after it, is stored.
                if len(group) == 1:
                    log.warning("ingest store refused a batch of participant %s: %s", _participant(group[0]), e)
                    return [e]
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
            self.failing_since = self.failing_since or time.monotonic() - waited
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

    # Whole groups go in as a few multi-row statements (server/store/telemetry.py says why).

    def _insert_shared(self, conn: Connection, group: list[_Request]) -> list[WriteResult]:
        samples = [row for req in group for row in req.samples]
        events = [row for req in group for row in req.events]
        if self._insert.samples(conn, samples) != len(samples):
            raise _Shortfall
        if self._insert.events(conn, events) != len(events):
            raise _Shortfall
        return [WriteResult(stored=len(r.samples), duplicates=0, events_stored=len(r.events)) for r in group]

    @staticmethod
    def _mark_started(conn: Connection, group: list[_Request]) -> None:
        mark_started(conn, (r.start_session for r in group if r.start_session is not None), now_ms())

    def _insert_one(self, conn: Connection, req: _Request) -> WriteResult:
        stored = self._insert.samples(conn, req.samples)
        events_stored = self._insert.events(conn, req.events)
        return WriteResult(stored=stored, duplicates=len(req.samples) - stored, events_stored=events_stored)
