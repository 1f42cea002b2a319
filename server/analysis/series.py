"""A session's stored samples as NumPy arrays, one set per participant.

Reads only the typed headline columns (server/ingest/headline.py), never
the JSON, so a 60-minute two-party session loads in milliseconds. Missing
figures are NaN: absence is never read as zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray
from sqlalchemy import select
from sqlalchemy.engine import Connection

from server.store import tables as t

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# Order of the float columns read from the sample table.
METRICS = (
    "rtt_ms",
    "jitter_ms",
    "loss_in",
    "audio_loss_in",
    "video_loss_in",
    "bitrate_in_kbps",
    "fps_in",
    "frames_dropped_in",
    "freeze_ms_in",
    "concealed_ratio_in",
    "no_media_in",  # 1.0 / 0.0 / NaN
    "audio_packets_in",
    "frames_in",
    "last_packet_in_ms",  # epoch ms
)


@dataclass
class ParticipantSeries:
    participant_id: int
    role: str
    t_ms: IntArray
    interval_ms: IntArray
    values: dict[str, FloatArray]

    def __len__(self) -> int:
        return int(self.t_ms.shape[0])

    def col(self, name: str) -> FloatArray:
        return self.values[name]

    @property
    def end_ms(self) -> IntArray:
        return self.t_ms + self.interval_ms


@dataclass
class EventRecord:
    participant_id: int | None
    role: str | None
    kind: str
    origin: str
    t_ms: int
    end_ms: int | None
    data: dict[str, Any]


@dataclass
class SessionData:
    session_id: int
    started_ms: int | None
    ended_ms: int | None
    participants: list[ParticipantSeries]
    events: list[EventRecord] = field(default_factory=list)
    # Count and newest receipt time of the samples: a cached summary is
    # stale when either differs from what it was computed from.
    sample_count: int = 0
    last_received_ms: int = 0
    # Set when the raw samples were pruned: the series are then the
    # per-minute roll-up (server/analysis/rollup.py), one point a minute.
    samples_pruned_ms: int | None = None

    @property
    def t0_ms(self) -> int | None:
        """Origin of the session's time axis: first sample, or start."""
        firsts = [int(p.t_ms[0]) for p in self.participants if len(p)]
        if firsts:
            return min(firsts)
        return self.started_ms

    @property
    def t1_ms(self) -> int | None:
        lasts = [int(p.end_ms[-1]) for p in self.participants if len(p)]
        if lasts:
            return max(lasts)
        return self.ended_ms


def from_rows(participant_id: int, role: str, rows: list[tuple[Any, ...]]) -> ParticipantSeries:
    """Rows of (t_ms, interval_ms, *METRICS) in time order -> series."""
    if rows:
        arr = np.array(rows, dtype=np.float64)
    else:
        arr = np.empty((0, 2 + len(METRICS)), dtype=np.float64)
    return from_array(participant_id, role, arr)


def from_array(participant_id: int, role: str, arr: NDArray[np.float64]) -> ParticipantSeries:
    """Columns (t_ms, interval_ms, *METRICS), rows in time order -> series."""
    values = {name: np.ascontiguousarray(arr[:, 2 + i]) for i, name in enumerate(METRICS)}
    return ParticipantSeries(
        participant_id=participant_id,
        role=role,
        t_ms=arr[:, 0].astype(np.int64),
        interval_ms=arr[:, 1].astype(np.int64),
        values=values,
    )


def load_session(conn: Connection, session_id: int, *, with_samples: bool = True) -> SessionData:
    srow = conn.execute(
        select(t.session.c.started_ms, t.session.c.ended_ms).where(t.session.c.id == session_id)
    ).first()
    if srow is None:
        raise LookupError(f"no session {session_id}")
    parts = list(
        conn.execute(
            select(t.participant.c.id, t.participant.c.role)
            .where(t.participant.c.session_id == session_id)
            .order_by(t.participant.c.role)  # "client" before "clinician"
        )
    )
    series: list[ParticipantSeries] = []
    count = 0
    last_rx = 0
    arr = np.empty((0, 4 + len(METRICS)), dtype=np.float64)
    if with_samples and parts:
        # The raw DBAPI cursor: SQLAlchemy's row objects cost more than the
        # query itself for the thousands of rows of a long session.
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        cols = ", ".join(["participant_id", "t_ms", "interval_ms", *METRICS, "received_ms"])
        sql = (f"SELECT {cols} FROM sample WHERE participant_id IN ({', '.join([mark] * len(parts))}) "
               "ORDER BY participant_id, seq")
        cur = conn.connection.cursor()
        try:
            cur.execute(sql, tuple(int(pid) for pid, _ in parts))
            rows = cur.fetchall()
        finally:
            cur.close()
        if rows:
            arr = np.array(rows, dtype=np.float64)  # None -> NaN
    for pid, role in parts:
        sub = arr[arr[:, 0] == int(pid)]
        if len(sub):
            count += len(sub)
            last_rx = max(last_rx, int(sub[:, -1].max()))
        series.append(from_array(int(pid), str(role), sub[:, 1:-1]))
    roles = {int(pid): str(role) for pid, role in parts}
    events = [
        EventRecord(
            participant_id=e.participant_id,
            role=roles.get(e.participant_id) if e.participant_id is not None else None,
            kind=e.kind,
            origin=e.origin,
            t_ms=int(e.t_ms),
            end_ms=int(e.end_ms) if e.end_ms is not None else None,
            data=_decode(e.data),
        )
        for e in conn.execute(
            select(
                t.event.c.participant_id, t.event.c.kind, t.event.c.origin, t.event.c.t_ms, t.event.c.end_ms,
                t.event.c.data,
            )
            .where(t.event.c.session_id == session_id, t.event.c.origin != "detector")
            .order_by(t.event.c.t_ms, t.event.c.id)
        )
    ]
    return SessionData(
        session_id=session_id,
        started_ms=srow.started_ms,
        ended_ms=srow.ended_ms,
        participants=series,
        events=events,
        sample_count=count,
        last_received_ms=last_rx,
    )


def _decode(data: str | None) -> dict[str, Any]:
    if not data:
        return {}
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
