"""How probe figures reach the store: the ingest writer, rows as ingest builds them.

Samples and events go through the same validation and row building as any
collector's (server/ingest/protocol.py), so a probe sample is stored exactly
as a collector's would be, with its headline columns derived the same way.
Events the probe observed are stored with origin ``probe``; their key makes
a repeated write a no-op.
"""

from __future__ import annotations

import logging
from typing import Any

from media.probe.profile import PROBE_SEQ_BASE, STREAM_PARTICIPANT
from server.config import Settings
from server.ingest import protocol as p
from server.ingest.schema import SCHEMA_ID
from server.ingest.writer import IngestWriter, WriteResult
from server.sessions.tokens import TokenOwner
from server.timeutil import now_ms

log = logging.getLogger("bondline.sidecar")


def probe_event(kind: str, t_ms: int | None = None, **data: Any) -> dict[str, Any]:
    """An event without an episode (start, end, reconnect, check)."""
    when = t_ms if t_ms is not None else now_ms()
    run = data.get("run", "")
    return {"key": f"probe-{run}-{kind}-{when}", "kind": kind, "tMs": when, **data}


async def write(writer: IngestWriter, settings: Settings, owner: TokenOwner, samples: list[dict[str, Any]],
                events: list[dict[str, Any]], *, start_session: int | None = None) -> WriteResult:
    """Validate like ingest and write; raises ``protocol.Refusal`` on bad input.
    ``start_session`` marks that session started in the same transaction."""
    msg: dict[str, Any] = {"type": "samples", "schema": SCHEMA_ID, "samples": samples, "events": events}
    batch = p.validate_batch(msg, settings, sidecar=True)
    rows, event_rows = p.to_rows(batch, owner, event_origin="probe")
    return await writer.write(rows, event_rows, start_session=start_session)


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
