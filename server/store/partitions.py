"""The sample table's time partitions on PostgreSQL (docs/deploy.md,
"PostgreSQL: the sample table's partitions").

On PostgreSQL ``sample`` is partitioned by range of ``part_ms``, the
creation time of the sample's participant, one partition per UTC week
(Monday to Monday). Why that column and not the sample's own ``t_ms``:
PostgreSQL requires the partition key in the primary key, and the
identity of a sample is ``(participant_id, seq)`` (docs/telemetry.md).
``part_ms`` is a function of ``participant_id`` (a participant's created
time never changes), so the key ``(participant_id, seq, part_ms)`` is
exactly as unique as ``(participant_id, seq)`` and a resent sample is still
ignored; with ``t_ms`` in the key, a resend carrying another start time
would be stored twice. It also keeps a session's samples in one partition,
so dropping one never leaves half a session.

Rows get ``part_ms`` inside the INSERT, from the participant row
(server/store/telemetry.py), so no producer has to know about it; the
column exists only on PostgreSQL (SQLite has no partitions).

Partitions are created on demand: a trigger on ``participant`` makes sure
the week of every new participant and the week after it exist, so the
partition a sample needs is there before its participant can send one, and
the next week's is made a week ahead (the DDL takes a brief lock on
``sample``; doing it ahead keeps that off the busy first minute of a week).
Producers other than live ingest (imports) make their participant's week
again if pruning dropped it (server/store/telemetry.py, insert_samples).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

PARTITION_KEY = "part_ms"
DAY_MS = 86_400_000
PERIOD_MS = 7 * DAY_MS
# 1970-01-01 was a Thursday: weeks start on Monday 1970-01-05 and every 7 days.
WEEK_ORIGIN_MS = 4 * DAY_MS
PARTITION_PREFIX = "sample_p"
_NAME = re.compile(rf"^{PARTITION_PREFIX}\d{{8}}$")
_BOUND = re.compile(r"FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")

# The SQL the migration installs (server/store/migrations/versions/
# 0002_partitions.py); kept here beside the Python twin of the same rule.
CREATE_FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION bondline_sample_week(at_ms bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
  SELECT at_ms - (((at_ms - {WEEK_ORIGIN_MS}) % {PERIOD_MS}) + {PERIOD_MS}) % {PERIOD_MS}
$$;

CREATE OR REPLACE FUNCTION bondline_sample_partition(at_ms bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  lo bigint := bondline_sample_week(at_ms);
  name text := '{PARTITION_PREFIX}' || to_char(to_timestamp(lo / 1000) AT TIME ZONE 'UTC', 'YYYYMMDD');
BEGIN
  IF to_regclass(name) IS NULL THEN
    -- Two sessions created at once in a new week must not both create it.
    PERFORM pg_advisory_xact_lock(hashtext('bondline.sample_partition'));
    IF to_regclass(name) IS NULL THEN
      EXECUTE format('CREATE TABLE %I PARTITION OF sample FOR VALUES FROM (%s) TO (%s)',
                     name, lo, lo + {PERIOD_MS});
    END IF;
  END IF;
  RETURN name;
END
$$;

CREATE OR REPLACE FUNCTION bondline_participant_partitions() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM bondline_sample_partition(NEW.created_ms);
  PERFORM bondline_sample_partition(NEW.created_ms + {PERIOD_MS});
  RETURN NEW;
END
$$;
"""

CREATE_TRIGGER = """
CREATE TRIGGER participant_sample_partitions AFTER INSERT ON participant
FOR EACH ROW EXECUTE FUNCTION bondline_participant_partitions()
"""

DROP_FUNCTIONS = """
DROP TRIGGER IF EXISTS participant_sample_partitions ON participant;
DROP FUNCTION IF EXISTS bondline_participant_partitions();
DROP FUNCTION IF EXISTS bondline_sample_partition(bigint);
DROP FUNCTION IF EXISTS bondline_sample_week(bigint);
"""


def week_start_ms(at_ms: int) -> int:
    """The start of the partition week holding ``at_ms`` (Monday 00:00 UTC)."""
    return at_ms - (at_ms - WEEK_ORIGIN_MS) % PERIOD_MS


def partition_name(at_ms: int) -> str:
    start = datetime.fromtimestamp(week_start_ms(at_ms) / 1000, tz=UTC)
    return f"{PARTITION_PREFIX}{start:%Y%m%d}"


def is_partitioned(conn: Connection) -> bool:
    """Whether this database's sample table is partitioned (PostgreSQL after
    migration 0002_partitions)."""
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.execute(text("SELECT relkind FROM pg_class WHERE oid = to_regclass('sample')")).scalar()
    return kind == "p"


def ensure_participant_partitions(conn: Connection, participant_ids: set[int]) -> None:
    """Make sure the weeks of these participants' partitions exist (one
    statement; a no-op when they do)."""
    conn.execute(text("SELECT bondline_sample_partition(created_ms) FROM participant WHERE id = ANY(:ids)"),
                 {"ids": sorted(participant_ids)})


def partitions(conn: Connection) -> list[tuple[str, int, int]]:
    """The sample table's partitions as (name, from_ms, to_ms), oldest first."""
    rows = conn.execute(text(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass('sample')"
    )).all()
    out = []
    for name, bound in rows:
        m = _BOUND.search(bound or "")
        if m is None:  # a DEFAULT partition: Bondline makes none
            raise RuntimeError(f"sample partition {name} has an unexpected bound: {bound}")
        out.append((str(name), int(m.group(1)), int(m.group(2))))
    return sorted(out, key=lambda p: p[1])


def drop_partitions_older_than(conn: Connection, cutoff_ms: int) -> list[str]:
    """Drop every sample partition whose whole range lies before
    ``cutoff_ms``: the samples of participants created before the start of
    the cutoff's week. Runs in the caller's transaction (PostgreSQL DDL is
    transactional: a crash drops all or none); returns the names dropped.
    The caller decides what may go (roll-ups written first; a cutoff no
    later than now minus ``token_max_age_days``, see
    ``drop_whole_partitions``); this only drops. Dropping a partition is a catalogue change, not a DELETE: no
    dead rows, no vacuum, the disk space is returned at once."""
    dropped = []
    for name, _lo, hi in partitions(conn):
        if hi <= cutoff_ms:
            conn.exec_driver_sql(f'DROP TABLE "{name}"')
            dropped.append(name)
    return dropped


@dataclass(frozen=True)
class DroppedPartition:
    name: str
    # The sessions that had samples in it, and how many samples it held.
    sessions: frozenset[int]
    samples: int


def partition_sessions(conn: Connection, from_ms: int, to_ms: int) -> frozenset[int]:
    """The sessions with samples in the partition [from_ms, to_ms): those of
    its participants (created in that range) that sent any. A session with
    no samples there has nothing to lose by the drop."""
    rows = conn.execute(text(
        "SELECT DISTINCT p.session_id FROM participant p WHERE p.created_ms >= :lo AND p.created_ms < :hi "
        "AND EXISTS (SELECT 1 FROM sample s WHERE s.participant_id = p.id AND s.part_ms = p.created_ms)"
    ), {"lo": from_ms, "hi": to_ms})
    return frozenset(int(sid) for (sid,) in rows)


def drop_partition_if(
    conn: Connection, name: str, from_ms: int, to_ms: int, may_go: Callable[[frozenset[int]], bool]
) -> DroppedPartition | None:
    """Drop one partition if ``may_go`` accepts its sessions (those with
    samples in it), in the caller's transaction; the caller marks those
    sessions' samples as gone in the same transaction. Pruning's fast
    path: no DELETE of rows one by one. None if it stays (or is gone).

    The partition must lie wholly before now minus the ingest tokens'
    longest life (``token_max_age_days``): by then no participant created
    in its week can send, and a session that never sent has nothing to lose.
    New participants are held off (a SHARE lock on ``participant``) from the
    check to the commit, so none created meanwhile with an old created time
    (an import, the demo) can put samples into the week this drops; the
    advisory lock partition creation takes keeps two prunes apart."""
    conn.exec_driver_sql("LOCK TABLE participant IN SHARE MODE")
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('bondline.sample_partition'))"))
    if conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar() is None:
        return None
    sessions = partition_sessions(conn, from_ms, to_ms)
    if not may_go(sessions):
        return None
    count = int(conn.exec_driver_sql(f'SELECT count(*) FROM "{name}"').scalar_one())
    conn.exec_driver_sql(f'DROP TABLE "{name}"')
    return DroppedPartition(name, sessions, count)


def drop_whole_partitions(
    conn: Connection, cutoff_ms: int, may_go: Callable[[frozenset[int]], bool]
) -> list[DroppedPartition]:
    """``drop_partition_if`` for every partition wholly before ``cutoff_ms``,
    all in the caller's transaction."""
    dropped = []
    for name, lo, hi in partitions(conn):
        if hi > cutoff_ms:
            break
        one = drop_partition_if(conn, name, lo, hi, may_go)
        if one is not None:
            dropped.append(one)
    return dropped


def schema_filter(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """For Alembic's compare: the partitions and their key are PostgreSQL's
    storage layout, not part of the schema the code queries (tables.py)."""
    if type_ == "table" and reflected and name is not None and _NAME.match(name):
        return False
    if type_ == "column" and reflected and name == PARTITION_KEY:
        return getattr(getattr(obj, "table", None), "name", None) != "sample"
    return True
