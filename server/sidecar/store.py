"""How probe figures reach the store: the ingest writer, rows as ingest builds them.

Samples go through the same validation and row building as any collector's
(server/ingest/protocol.py), so a probe sample is stored exactly as a
collector's would be, with its headline columns derived the same way.
Events the probe observed are stored with origin ``probe``; their key makes
a repeated write a no-op.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from sqlalchemy import update

from media.probe.profile import PROBE_SEQ_BASE, STREAM_PARTICIPANT
from server.config import Settings
from server.ingest import protocol as p
from server.ingest.schema import SCHEMA_ID
from server.ingest.writer import EventRow, IngestWriter, WriteResult
from server.sessions.tokens import TokenOwner
from server.store import tables as t
from server.timeutil import now_ms

log = logging.getLogger("bondline.sidecar")

_EVENT_FIELDS = ("key", "kind", "tMs", "endMs", "severity")


def event_row(owner: TokenOwner, event: dict[str, Any]) -> EventRow:
    data = {k: v for k, v in event.items() if k not in _EVENT_FIELDS}
    return (
        owner.session_id,
        owner.participant_id,
        event["kind"],
        "probe",
        int(event["tMs"]),
        int(event["endMs"]) if event.get("endMs") is not None else None,
        float(event["severity"]) if event.get("severity") is not None else None,
        event.get("key"),
        orjson.dumps(data).decode("utf-8"),
    )


def probe_event(kind: str, t_ms: int | None = None, **data: Any) -> dict[str, Any]:
    """An event without an episode (start, end, reconnect, check)."""
    when = t_ms if t_ms is not None else now_ms()
    run = data.get("run", "")
    return {"key": f"probe-{run}-{kind}-{when}", "kind": kind, "tMs": when, **data}


async def write(writer: IngestWriter, settings: Settings, owner: TokenOwner, samples: list[dict[str, Any]],
                events: list[dict[str, Any]]) -> WriteResult:
    """Validate like ingest and write; raises ``protocol.Refusal`` on bad input."""
    msg: dict[str, Any] = {"type": "samples", "schema": SCHEMA_ID, "samples": samples, "events": events}
    batch = p.validate_batch(msg, settings)
    rows, _ = p.to_rows(batch, owner)
    # Events are checked by the same schema, but stored with origin "probe".
    return await writer.write(rows, [event_row(owner, e) for e in events])


def check_participant_samples(samples: object) -> str | None:
    """Why samples a participant reported over the probe socket are not its
    probe samples, or None. Their seqs must be participant-side probe seqs."""
    if not isinstance(samples, list):
        return "samples must be a list"
    for s in samples:
        if not isinstance(s, dict):
            return "each sample must be an object"
        seq, start = s.get("seq"), s.get("startMs")
        if s.get("source") != "probe":
            return "probe reports carry samples with source 'probe'"
        if not isinstance(seq, int) or not isinstance(start, int) or start % 1000:
            return "probe samples start on whole seconds and carry an integer seq"
        if seq != PROBE_SEQ_BASE + (start // 1000) * 4 + STREAM_PARTICIPANT:
            return f"sample seq {seq} is not the participant probe seq of startMs {start}"
    return None


def check_events(events: object) -> str | None:
    if not isinstance(events, list):
        return "events must be a list"
    for e in events:
        if not isinstance(e, dict) or not str(e.get("kind", "")).startswith("probe."):
            return "probe reports carry events whose kind starts with 'probe.'"
    return None


def mark_started(conn: Any, session_id: int) -> None:
    conn.execute(
        update(t.session)
        .where(t.session.c.id == session_id, t.session.c.started_ms.is_(None))
        .values(started_ms=now_ms())
    )
