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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import exc
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger("bondline.ingest")

SAMPLE_COLUMNS = (
    "participant_id",
    "seq",
    "t_ms",
    "interval_ms",
    "source",
    "received_ms",
    "rtt_ms",
    "jitter_ms",
    "loss_in",
    "audio_loss_in",
    "video_loss_in",
    "bitrate_in_kbps",
    "bitrate_out_kbps",
    "fps_in",
    "frames_dropped_in",
    "freeze_ms_in",
    "concealed_ratio_in",
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


def _insert_sql(table: str, columns: tuple[str, ...], paramstyle: str, conflict: str) -> str:
    marks = ", ".join(["?"] * len(columns)) if paramstyle == "qmark" else ", ".join(["%s"] * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) ON CONFLICT {conflict} DO NOTHING"


class IngestWriter:
    """Serialises telemetry writes of one process into group commits."""

    def __init__(self, engine: Engine, *, max_group_rows: int = 5000) -> None:
        self._engine = engine
        self._max_group_rows = max_group_rows
        self._queue: asyncio.Queue[_Request] | None = None
        self._task: asyncio.Task[None] | None = None
        # One thread: SQLite allows one writer anyway, and ordering per
        # connection is then the order batches were queued.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bondline-writer")
        paramstyle = engine.dialect.paramstyle
        self._sample_sql = _insert_sql("sample", SAMPLE_COLUMNS, paramstyle, "(participant_id, seq)")
        self._event_sql = _insert_sql("event", EVENT_COLUMNS, paramstyle, "(participant_id, client_key)")
        self.commits = 0
        self.rows = 0
        self.slow_commit_s = 2.0

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="bondline-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def write(self, samples: list[SampleRow], events: list[EventRow]) -> WriteResult:
        """Queue rows and return once they are committed."""
        assert self._queue is not None, "writer not started"
        fut: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(samples, events, fut))
        return await fut

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            group = [await self._queue.get()]
            rows = len(group[0].samples)
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
        out: list[WriteResult] = []
        t0 = time.perf_counter()
        with self._engine.begin() as conn:
            t1 = time.perf_counter()
            for req in group:
                out.append(self._insert(conn, req))
            t2 = time.perf_counter()
        took = time.perf_counter() - t0
        if took > 0.25:
            # Seen on slow disks (I/O wait), not CPU: the figure for operators.
            log.info("slow ingest commit: %.0f ms for %d requests (begin %.0f, insert %.0f, commit %.0f)",
                     took * 1000, len(group), (t1 - t0) * 1000, (t2 - t1) * 1000, (time.perf_counter() - t2) * 1000)
        self.commits += 1
        self.rows += sum(len(r.samples) for r in group)
        return out

    def _insert(self, conn: Connection, req: _Request) -> WriteResult:
        stored = 0
        if req.samples:
            res = conn.exec_driver_sql(self._sample_sql, req.samples)
            stored = res.rowcount
        events_stored = 0
        if req.events:
            res = conn.exec_driver_sql(self._event_sql, req.events)
            events_stored = res.rowcount
        return WriteResult(stored=stored, duplicates=len(req.samples) - stored, events_stored=events_stored)


def now_ms() -> int:
    return int(time.time() * 1000)
