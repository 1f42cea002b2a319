"""The one way telemetry reaches the store: sample and event rows, inserted
exactly once, and the mark that a session has started.

Every producer goes through here: live ingest (its group-commit writer),
the sidecar (through that writer), the dump importers and the demo builder.
Rows are named tuples whose fields are the table's columns in order, so a
row can go to the driver as it is and a test can hold the two together
(tests/test_store_telemetry.py).

Exactly-once lives in the schema: samples are keyed by (participant, seq)
and keyed events by (participant, client_key); both are inserted with
ON CONFLICT DO NOTHING, so a resent row is counted, not stored again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import chain
from typing import NamedTuple

from sqlalchemy import update
from sqlalchemy.engine import Connection

from server.store import tables as t
from server.store.partitions import PARTITION_KEY, ensure_participant_partitions


class SampleRow(NamedTuple):
    """One row of ``sample``: a participant's figures for one interval."""

    participant_id: int
    seq: int
    t_ms: int
    interval_ms: int
    source: str
    received_ms: int
    # The headline figures (server/ingest/headline.py), derived at ingest.
    rtt_ms: float | None
    jitter_ms: float | None
    loss_in: float | None
    audio_loss_in: float | None
    video_loss_in: float | None
    bitrate_in_kbps: float | None
    bitrate_out_kbps: float | None
    fps_in: float | None
    frames_dropped_in: float | None
    freeze_ms_in: float | None
    concealed_ratio_in: float | None
    # True: inbound streams were there and not one new packet arrived in the
    # interval (an interruption, not 0 % loss); then the loss columns are null.
    no_media_in: bool | None
    # New audio packets received (first transmissions): places an
    # interruption's edges within the interval (docs/methodology.md).
    audio_packets_in: float | None
    # Video frames received (W3C framesReceived): where frames stopped
    # arriving places a freeze's start (docs/methodology.md).
    frames_in: float | None
    # When the latest audio packet arrived (epoch ms on the stats clock, the
    # latest over inbound audio streams): places an interruption's edges to
    # the packet (docs/methodology.md). None from collectors without it.
    last_packet_in_ms: float | None
    # The validated sample as JSON text.
    data: str


class EventRow(NamedTuple):
    """One row of ``event`` (its ``id`` is the store's)."""

    session_id: int
    participant_id: int | None
    kind: str
    # Who observed it: "collector", "server", "probe", "analysis".
    origin: str
    t_ms: int
    end_ms: int | None
    severity: float | None
    # Set for events a producer may send again (collectors, the probe):
    # the store keeps one per (participant, client_key).
    client_key: str | None
    data: str


SAMPLE_COLUMNS: tuple[str, ...] = SampleRow._fields
EVENT_COLUMNS: tuple[str, ...] = EventRow._fields
HEADLINE_COLUMNS: tuple[str, ...] = SAMPLE_COLUMNS[SAMPLE_COLUMNS.index("rtt_ms"): SAMPLE_COLUMNS.index("data")]

# Rows per multi-row statement. Bound parameters per statement: SQLite >=
# 3.32 allows 32,766, PostgreSQL 65,535; 500 rows of 18 stay well below.
CHUNK_ROWS = 500
_CONFLICT = {"sample": "(participant_id, seq)", "event": "(participant_id, client_key)"}
_COLUMNS = {"sample": SAMPLE_COLUMNS, "event": EVENT_COLUMNS}


class RowInserter:
    """Inserts rows of one dialect, skipping duplicates; counts what was new.

    SQLite takes multi-row statements: the sqlite3 driver releases the GIL
    around every statement step, and a one-row statement per request made a
    200-request group take about a second while the event loop was busy
    (docs/performance.md, "Telemetry ingest"). psycopg instead pipelines an
    executemany of one-row statements, and spent 7x the CPU binding one
    9,000-parameter statement (117 vs 25 us a row)."""

    def __init__(self, dialect_name: str, paramstyle: str) -> None:
        self._mark = "?" if paramstyle == "qmark" else "%s"
        self._multirow = dialect_name == "sqlite"
        # PostgreSQL's sample table is partitioned by its participant's
        # created time (server/store/partitions.py): each row looks it up.
        self._partitioned = dialect_name == "postgresql"
        self._sql_cache: dict[tuple[str, int], str] = {}

    def samples(self, conn: Connection, rows: Sequence[SampleRow]) -> int:
        return self._insert(conn, "sample", rows)

    def events(self, conn: Connection, rows: Sequence[EventRow]) -> int:
        return self._insert(conn, "event", rows)

    def _insert(self, conn: Connection, table: str, rows: Sequence[tuple[object, ...]]) -> int:
        if not rows:
            return 0
        if not self._multirow:
            params: list[tuple[object, ...]] = list(rows)
            if self._partitioned and table == "sample":
                params = [(*row, row[0]) for row in rows]
            return int(conn.exec_driver_sql(self._sql(table, 1), params).rowcount)
        stored = 0
        for i in range(0, len(rows), CHUNK_ROWS):
            chunk = rows[i: i + CHUNK_ROWS]
            res = conn.exec_driver_sql(self._sql(table, len(chunk)), tuple(chain.from_iterable(chunk)))
            stored += res.rowcount
        return stored

    def _sql(self, table: str, rows: int) -> str:
        key = (table, rows)
        sql = self._sql_cache.get(key)
        if sql is None:
            columns = _COLUMNS[table]
            marks = [self._mark] * len(columns)
            conflict = _CONFLICT[table]
            if self._partitioned and table == "sample":
                # part_ms is a function of participant_id, so the wider key
                # is exactly as unique as (participant_id, seq).
                columns = (*columns, PARTITION_KEY)
                marks.append(f"(SELECT created_ms FROM participant WHERE id = {self._mark})")
                conflict = f"(participant_id, seq, {PARTITION_KEY})"
            row = "(" + ", ".join(marks) + ")"
            sql = (f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([row] * rows)} "
                   f"ON CONFLICT {conflict} DO NOTHING")
            if len(self._sql_cache) < 2 * CHUNK_ROWS:
                self._sql_cache[key] = sql
        return sql


def inserter_for(conn: Connection) -> RowInserter:
    return RowInserter(conn.dialect.name, conn.dialect.paramstyle)


def insert_samples(conn: Connection, rows: Sequence[SampleRow]) -> int:
    """Insert sample rows in the caller's transaction; returns how many were new.

    For producers other than live ingest (imports, the demo): they may
    write for a participant whose week pruning has dropped (an import into
    an old session), so on PostgreSQL the week is made again first. Live
    ingest (server/ingest/writer.py) skips this: a participant that can
    still send has its week (server/store/partitions.py)."""
    if rows and conn.dialect.name == "postgresql":
        ensure_participant_partitions(conn, {r.participant_id for r in rows})
    return inserter_for(conn).samples(conn, rows)


def insert_events(conn: Connection, rows: Sequence[EventRow]) -> int:
    """Insert event rows in the caller's transaction; returns how many keyed
    events were new (unkeyed ones are always new)."""
    return inserter_for(conn).events(conn, rows)


def mark_started(conn: Connection, session_ids: Iterable[int], at_ms: int) -> None:
    """Mark sessions as started at ``at_ms`` unless they already are: the
    first telemetry of any participant (collector or probe) starts a session."""
    ids = sorted(set(session_ids))
    if ids:
        conn.execute(
            update(t.session)
            .where(t.session.c.id.in_(ids), t.session.c.started_ms.is_(None))
            .values(started_ms=at_ms)
        )
