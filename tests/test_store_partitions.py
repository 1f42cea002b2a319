"""PostgreSQL's sample table partitioned by week (server/store/partitions.py):
the migration converts a populated database losing and doubling nothing,
exactly-once still holds on (participant, seq), partitions appear on demand
and pruning drops whole weeks and nothing else.

Participants' created times and sample counts are drawn per run from the
run's fuzz seed (printed in the header; replay with BONDLINE_FUZZ_SEED)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import func, insert, inspect, select, text
from sqlalchemy.engine import Connection, Engine

from server.config import normalise_database_url
from server.store import tables as t
from server.store.db import make_engine, upgrade
from server.store.partitions import (
    PERIOD_MS,
    drop_partitions_older_than,
    drop_whole_partitions,
    is_partitioned,
    partition_name,
    partitions,
    week_start_ms,
)
from server.store.telemetry import SampleRow, insert_samples
from tests.conftest import fresh_pg_database
from tests.support.fuzz import FUZZ_SEED

NOW = 1_764_590_400_000  # 2025-12-01T12:00Z, a Monday
WEEK = PERIOD_MS


@pytest.fixture
def pg_engine() -> Iterator[tuple[str, Engine]]:
    with fresh_pg_database() as raw:
        url = normalise_database_url(raw)
        engine = make_engine(url)
        try:
            yield url, engine
        finally:
            engine.dispose()


def _row(pid: int, seq: int, t_ms: int) -> SampleRow:
    values: dict[str, object] = dict.fromkeys(SampleRow._fields)
    values.update(participant_id=pid, seq=seq, t_ms=t_ms, interval_ms=1000, source="python", received_ms=t_ms + 40,
                  rtt_ms=20.0 + seq % 7, loss_in=0.01 * (seq % 3), frames_in=float(seq % 25),
                  last_packet_in_ms=t_ms + 992.5,
                  data=f'{{"seq": {seq}}}')
    return SampleRow(**values)  # type: ignore[arg-type]


def _participants(c: Connection, created: list[int]) -> list[int]:
    cid = c.execute(insert(t.clinician).values(email="p@example.org", created_ms=NOW)
                    .returning(t.clinician.c.id)).scalar_one()
    kid = c.execute(insert(t.client).values(clinician_id=cid, code="C-PART", created_ms=NOW)
                    .returning(t.client.c.id)).scalar_one()
    pids = []
    for i, ms in enumerate(created):
        sid = c.execute(insert(t.session).values(clinician_id=cid, client_id=kid, number=i + 1,
                                                 created_ms=ms).returning(t.session.c.id)).scalar_one()
        pids.append(c.execute(insert(t.participant).values(session_id=sid, role="client", token_hash=f"h{i}",
                                                           created_ms=ms).returning(t.participant.c.id)).scalar_one())
    return pids


def _content(engine: Engine) -> list[tuple[object, ...]]:
    cols = [c for c in t.sample.columns]
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(*cols).order_by(t.sample.c.participant_id, t.sample.c.seq))]


def test_migration_converts_a_populated_database_and_pruning_drops_whole_weeks(pg_engine: tuple[str, Engine]) -> None:
    url, engine = pg_engine
    rng = random.Random(FUZZ_SEED)
    # Participants spread over about ten weeks before NOW, two of them in the
    # same week (one partition holds both), each with its own sample count.
    created = sorted(NOW - rng.randrange(0, 10 * WEEK) for _ in range(5))
    created.append(created[-1] + rng.randrange(0, 3_600_000))
    counts = [rng.randrange(1, 400) for _ in created]
    print(f"seed {FUZZ_SEED}: created {created}, counts {counts}")

    upgrade(url, "0001")
    with engine.begin() as conn:
        pids = _participants(conn, created)
        rows = [_row(pid, seq, ms + 60_000 + seq * 1000) for pid, ms, n in zip(pids, created, counts, strict=True)
                for seq in range(n)]
        first = {c["name"] for c in inspect(conn).get_columns("sample")}
        conn.execute(insert(t.sample), [{k: v for k, v in r._asdict().items() if k in first} for r in rows])
    # Migrations of another branch add columns first, and fill them: the
    # conversion must carry whatever columns the table has by then.
    upgrade(url, "0005_last_packet")
    with engine.begin() as conn:
        conn.execute(text("UPDATE sample SET frames_in = seq % 25, no_media_in = (seq % 5 = 0),"
                          " last_packet_in_ms = t_ms + 992.5"))
    before = _content(engine)
    frames_at = SampleRow._fields.index("frames_in")
    assert {r[frames_at] for r in before} == {float(x) for x in range(min(25, max(counts)))}
    stamp_at = SampleRow._fields.index("last_packet_in_ms")
    assert all(r[stamp_at] == r[SampleRow._fields.index("t_ms")] + 992.5 for r in before)

    upgrade(url)
    with engine.connect() as conn:
        assert is_partitioned(conn)
        names = {p[0] for p in partitions(conn)}
        part_ms = dict(conn.execute(text("SELECT participant_id, min(part_ms) FROM sample GROUP BY 1")).all())
    assert _content(engine) == before, "the migration changed, lost or doubled samples"
    assert part_ms == dict(zip(pids, created, strict=True))
    for ms in created:
        assert partition_name(ms) in names and partition_name(ms + WEEK) in names

    # Exactly-once on (participant, seq): a resend, even with another start
    # time (which would land in the key if the table were keyed by it), is
    # not stored again; new seqs are.
    with engine.begin() as conn:
        resend = [_row(pid, 0, 123) for pid in pids] + [_row(pids[0], counts[0], NOW)]
        assert insert_samples(conn, resend) == 1
    assert len(_content(engine)) == len(before) + 1

    # A participant created in a week with no partition yet gets one on demand.
    far = NOW + 40 * WEEK + rng.randrange(0, WEEK)
    with engine.begin() as conn:
        sid = conn.execute(select(t.session.c.id).limit(1)).scalar_one()
        late = conn.execute(insert(t.participant).values(session_id=sid, role="therapist", token_hash="late",
                                                         created_ms=far).returning(t.participant.c.id)).scalar_one()
    with engine.begin() as conn:
        assert insert_samples(conn, [_row(late, s, far + s * 1000) for s in range(5)]) == 5
        assert partition_name(far) in {p[0] for p in partitions(conn)}

    # Prune at a cutoff inside the participants' range: whole weeks before
    # the cutoff's week go, with exactly their participants' samples.
    cutoff = created[rng.randrange(1, len(created))]
    with engine.begin() as conn:
        dropped = drop_partitions_older_than(conn, cutoff)
        assert drop_partitions_older_than(conn, cutoff) == []  # idempotent
    gone = {pid for pid, ms in zip(pids, created, strict=True) if week_start_ms(ms) + WEEK <= cutoff}
    assert {partition_name(ms) for pid, ms in zip(pids, created, strict=True) if pid in gone} <= set(dropped)
    with engine.connect() as conn:
        left = dict(conn.execute(select(t.sample.c.participant_id, func.count()).group_by(t.sample.c.participant_id))
                    .all())
        assert all(p[2] > cutoff for p in partitions(conn))
    expected = {pid: n + (1 if pid == pids[0] else 0) for pid, n in zip(pids, counts, strict=True) if pid not in gone}
    expected[late] = 5
    assert left == expected


def test_erasing_a_participant_still_cascades_to_its_partitioned_samples(pg_engine: tuple[str, Engine]) -> None:
    url, engine = pg_engine
    upgrade(url)
    with engine.begin() as conn:
        pids = _participants(conn, [NOW - 3 * WEEK, NOW])
        insert_samples(conn, [_row(pid, s, NOW) for pid in pids for s in range(10)])
    with engine.begin() as conn:
        conn.execute(t.participant.delete().where(t.participant.c.id == pids[0]))
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.sample)).scalar_one() == 10


def test_whole_partitions_go_only_when_every_session_in_them_may(pg_engine: tuple[str, Engine]) -> None:
    url, engine = pg_engine
    upgrade(url)
    old = week_start_ms(NOW) - 5 * WEEK + 3_600_000
    with engine.begin() as conn:
        # Three sessions in one old week: two sent samples, one never did;
        # one session this week.
        a, b, silent, new = _participants(conn, [old, old + 60_000, old + 120_000, NOW])
        insert_samples(conn, [_row(pid, s, old) for pid in (a, b) for s in range(30)])
        insert_samples(conn, [_row(new, s, NOW) for s in range(30)])
        sid = dict(conn.execute(select(t.participant.c.id, t.participant.c.session_id)).all())
    asked: list[frozenset[int]] = []

    def only(allowed: set[int]) -> Callable[[frozenset[int]], bool]:
        def may_go(sessions: frozenset[int]) -> bool:
            asked.append(sessions)
            return sessions <= allowed
        return may_go

    with engine.begin() as conn:
        # b's session may not go: its week stays. The week after it, made
        # ahead and never used, is empty and goes.
        first = drop_whole_partitions(conn, NOW, only({sid[a]}))
    assert [(d.name, d.sessions, d.samples) for d in first] == [(partition_name(old + WEEK), frozenset(), 0)]
    assert asked == [frozenset({sid[a], sid[b]}), frozenset()]  # the silent session does not hold it back
    with engine.begin() as conn:
        dropped = drop_whole_partitions(conn, NOW, only({sid[a], sid[b]}))
    assert [(d.name, d.sessions, d.samples) for d in dropped] == [
        (partition_name(old), frozenset({sid[a], sid[b]}), 60)]
    with engine.connect() as conn:
        left = dict(conn.execute(select(t.sample.c.participant_id, func.count())
                                 .group_by(t.sample.c.participant_id)).all())
    assert left == {new: 30}


def test_columns_added_after_the_conversion_reach_every_partition(pg_engine: tuple[str, Engine]) -> None:
    url, engine = pg_engine
    upgrade(url, "0002_partitions")
    upgrade(url)  # the other branch's ADD COLUMNs, now on the partitioned table
    with engine.begin() as conn:
        assert is_partitioned(conn)
        pids = _participants(conn, [NOW - 2 * WEEK, NOW])
        assert insert_samples(conn, [_row(pid, s, NOW) for pid in pids for s in range(30)]) == 60
    with engine.connect() as conn:
        frames = conn.execute(select(t.sample.c.frames_in).order_by(t.sample.c.participant_id, t.sample.c.seq))
        assert [f for (f,) in frames] == [float(s % 25) for s in range(30)] * 2
        stamps = conn.execute(select(t.sample.c.last_packet_in_ms).order_by(t.sample.c.participant_id,
                                                                            t.sample.c.seq))
        assert [v for (v,) in stamps] == [NOW + 992.5] * 60
