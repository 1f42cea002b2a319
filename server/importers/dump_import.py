"""Importing a Chromium stats dump as one participant's samples.

Turns a dump (server/importers/dumps.py) into ``bondline.sample/1`` samples
with source ``"import"`` and stores them for one participant through the
ingest path's own validation and row building (server/ingest/protocol.py)
and the store's one insert path (server/store/telemetry.py), in one
transaction: a bad file, an unknown session or role, a dump of more than
one participant, or a span already stored stores nothing.

- Each connection's streams carry its label (``pc``, the dump's key); a
  sample covers the time between two poll rounds in which every live
  connection was polled, so each figure covers exactly its sample.
- A connection the dump saw created counts from zero at its creation.
  Otherwise the first poll carries totals from before the dump: they are
  stored as one ``import.before_dump`` event (its own interval, with the
  per-stream totals), never spread over or dropped from the samples.
- What the dump covers and misses is said (``Coverage``) and stored as an
  ``import.coverage`` event, which also names the file so a second import
  of the same call can say what it overlaps.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine

from server.analysis.quality import invalidate as invalidate_quality
from server.config import Settings
from server.importers.checks import check_complete, check_one_participant, describe
from server.importers.chrome_stats import ChromeStatsReducer
from server.importers.coverage import Coverage, coverage_of
from server.importers.dumps import SAME_POLL_MS, Dump, DumpError, Timeline, load_dump
from server.ingest import protocol
from server.ingest.schema import SCHEMA_ID
from server.sessions.tokens import TokenOwner
from server.store import tables as t
from server.store.telemetry import insert_events, insert_samples

CONN_STATES = {"new", "connecting", "connected", "disconnected", "failed", "closed"}
ICE_STATES = {"new", "checking", "connected", "completed", "disconnected", "failed", "closed"}
MAX_INTERVAL_MS = 600_000
MIN_INTERVAL_MS = 50
# Connection facts stated for the whole sample only when every connection in it agrees.
SHARED_FACTS = ("state", "iceState", "localCandidateType", "remoteCandidateType", "protocol", "relayProtocol")
# Rates and point values of a first poll say nothing about the span before it: its totals keep only counts.
NOT_TOTALS = frozenset({"bitrateKbps", "framesPerSecond", "jitterMs", "rttMs", "audioLevel", "lastPacketReceivedMs",
                        "qualityLimitationReason"})


class ImportRefused(Exception):
    pass


@dataclass
class ImportResult:
    format: str
    connections: int
    samples: int
    events: int
    first_seq: int | None
    start_ms: int | None
    end_ms: int | None
    coverage: list[Coverage] = field(default_factory=list)


@dataclass
class Built:
    samples: list[dict[str, Any]]
    before: list[dict[str, Any]]  # import.before_dump events


def _state_at(events: list[tuple[float, str, str]], kind: str, t_ms: float) -> str | None:
    last = None
    for when, k, state in events:
        if k == kind and when <= t_ms:
            last = state
    return last


def _slots(timelines: list[Timeline]) -> list[tuple[float, dict[str, Any]]]:
    """Poll rounds: the polls of all connections, grouped when within SAME_POLL_MS."""
    flat = sorted(((when, tl.key, report) for tl in timelines for when, report in tl.polls), key=lambda x: x[0])
    slots: list[tuple[float, dict[str, Any]]] = []
    for when, key, report in flat:
        if slots and when - slots[-1][0] <= SAME_POLL_MS and key not in slots[-1][1]:
            slots[-1][1][key] = (when, report)
        else:
            slots.append((when, {key: (when, report)}))
    return slots


def _boundaries(timelines: list[Timeline], slots: list[tuple[float, dict[str, Any]]]) -> list[int]:
    """Slots in which every connection alive then was polled: a figure from one to the next
    covers exactly that span for every connection."""
    alive = {}
    for tl in timelines:
        idx = [i for i, (_, polled) in enumerate(slots) if tl.key in polled]
        if idx:
            alive[tl.key] = (idx[0], idx[-1])
    return [i for i, (_, polled) in enumerate(slots)
            if all(k in polled for k, (a, b) in alive.items() if a <= i <= b)]


def _before_event(tl: Timeline, first: tuple[float, dict[str, Any]], reducer_streams: list[dict[str, Any]],
                  start: tuple[float | None, str]) -> dict[str, Any]:
    when, _ = first
    begin, basis = start
    ev: dict[str, Any] = {"kind": "import.before_dump", "tMs": int(round(begin if begin is not None else when)),
                          "endMs": int(round(when)), "pc": tl.key,
                          "startKnown": begin is not None and basis == "created",
                          "startBasis": basis, "streams": reducer_streams[:64]}
    return ev


def _start_of(tl: Timeline, first: tuple[float, dict[str, Any]]) -> tuple[float | None, str]:
    """When the totals of a connection's first poll began counting, and how that is known."""
    when, report = first
    if tl.created_ms is not None and tl.created_ms <= when:
        return tl.created_ms, "created"
    # No creation time: inbound audio plays out continuously from its first packet, so its
    # totalSamplesDuration dates the stream's start (an estimate, said as such).
    played = [o.get("totalSamplesDuration") for o in report.values()
              if o.get("type") == "inbound-rtp" and o.get("kind") == "audio"]
    played = [p for p in played if isinstance(p, int | float) and p > 0]
    if played:
        return when - max(played) * 1000, "audio-playout"
    return None, "unknown"


def build(timelines: list[Timeline]) -> Built:
    """Samples (one per span between poll rounds) and 'before the dump' totals."""
    timelines = [tl for tl in timelines if tl.polls]
    slots = _slots(timelines)
    bounds = _boundaries(timelines, slots)
    by_key = {tl.key: tl for tl in timelines}
    reducers: dict[str, ChromeStatsReducer] = {}
    last_used: dict[str, int] = {}
    samples: list[dict[str, Any]] = []
    before: list[dict[str, Any]] = []
    prev_bound: int | None = None
    for b in bounds:
        when, polled = slots[b]
        streams: list[dict[str, Any]] = []
        facts: list[dict[str, Any]] = []
        begin = slots[prev_bound][0] if prev_bound is not None else None
        for key, (t_poll, report) in polled.items():
            tl = by_key[key]
            if key not in reducers:
                # This connection's first poll used here.
                first_poll = tl.polls[0][0] == t_poll
                from_zero = tl.watched_from_creation and not tl.truncated and first_poll and \
                    tl.created_ms is not None and (begin is None or tl.created_ms >= begin - SAME_POLL_MS)
                reducers[key] = ChromeStatsReducer(count_from_zero=from_zero)
                if not from_zero:
                    whole = ChromeStatsReducer(count_from_zero=True)
                    got, _, _ = whole.reduce(report, 1000.0)
                    totals = [{k: v for k, v in st.items() if k not in NOT_TOTALS} | {"pc": key} for st in got]
                    before.append(_before_event(tl, (t_poll, report), totals,
                                                _start_of(tl, (t_poll, report))))
                    reducers[key].reduce(report, 1000.0)
                    last_used[key] = b
                    continue
                if begin is None:
                    begin = tl.created_ms
            interval = t_poll - (slots[last_used[key]][1][key][0] if key in last_used else tl.created_ms or t_poll)
            got, conn, _ = reducers[key].reduce(report, interval or 1000.0)
            last_used[key] = b
            streams.extend(dict(s, pc=key) for s in got)
            c = dict(conn or {})
            c.pop("_bytes", None)
            st = _state_at(tl.events, "connection.state", t_poll)
            ice = _state_at(tl.events, "ice.state", t_poll)
            if st in CONN_STATES:
                c["state"] = st
            if ice in ICE_STATES:
                c["iceState"] = ice
            facts.append(dict(c, pc=key))
        prev_bound = b
        if not facts or begin is None:
            continue
        span = when - begin
        if span < MIN_INTERVAL_MS or span > MAX_INTERVAL_MS:
            continue  # a gap in the recording: no honest interval figures
        # Whole ms at both ends, so consecutive samples meet exactly.
        samples.append({"startMs": int(round(begin)), "intervalMs": int(round(when)) - int(round(begin)),
                        "source": "import",
                        "streams": streams[:64], "connection": _connection(facts)})
    return Built(samples, before)


def _connection(facts: list[dict[str, Any]]) -> dict[str, Any]:
    if len(facts) == 1:
        return dict(facts[0], connections=1)
    out: dict[str, Any] = {"connections": len(facts), "pcs": facts}
    for name in SHARED_FACTS:
        values = {f.get(name) for f in facts}
        if len(values) == 1 and None not in values:
            out[name] = values.pop()
    rtts = [f["rttMs"] for f in facts if isinstance(f.get("rttMs"), int | float)]
    if rtts:
        out["rttMs"] = max(rtts)  # the slowest path the participant had in the interval
    return out


def _event_key(*parts: object) -> str:
    # Keyed on what happened, not on the file: the .txt and .gz of one call store each event once.
    return "import." + hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:24]


def build_events(timelines: list[Timeline], built: Built, dump: Dump, cov: list[Coverage]) -> list[dict[str, Any]]:
    out = []
    for tl in timelines:
        for when, kind, state in tl.events:
            out.append({"key": _event_key(tl.key, kind, round(when, 1), state), "kind": kind, "tMs": int(when),
                        "state": state, "pc": tl.key})
    for ev in built.before:
        out.append(dict(ev, key=_event_key("before", ev["pc"], ev["endMs"])))
    if cov:
        out.append({"key": _event_key("coverage", dump.sha256), "kind": "import.coverage",
                    "tMs": min(c.from_ms for c in cov), "endMs": max(c.to_ms for c in cov), "file": dump.name,
                    "sha256": dump.sha256, "format": dump.format,
                    "connections": [c.as_dict() for c in cov]})
    return out


def _chunks(items: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _owner(conn: Connection, session_id: int, role: str) -> TokenOwner:
    pid = conn.execute(
        select(t.participant.c.id).where(t.participant.c.session_id == session_id, t.participant.c.role == role)
    ).scalar()
    if pid is None:
        raise ImportRefused(f"session {session_id} has no participant with role {role!r}")
    return TokenOwner(participant_id=int(pid), session_id=session_id, role=role)


def select_connections(dump: Dump, pcs: list[str] | None) -> list[Timeline]:
    timelines = dump.timelines
    if pcs:
        known = {tl.key for tl in timelines}
        unknown = [p for p in pcs if p not in known]
        if unknown:
            listing = "\n".join(describe(tl).line() for tl in timelines)
            raise DumpError(f"{dump.name} has no connection {', '.join(unknown)}; it has:\n{listing}\n")
        timelines = [tl for tl in timelines if tl.key in pcs]
    check_complete(dump.name, timelines)
    with_stats = [tl for tl in timelines if tl.polls]
    if not with_stats:
        raise DumpError(f"{dump.name}: the dump holds no stats history (no getStats polls) to import")
    check_one_participant(dump.name, with_stats)
    return with_stats


def _already(conn: Connection, owner: TokenOwner, dump: Dump, start: int, end: int) -> str | None:
    """Why this dump's span is already stored for the participant, or None."""
    ev = t.event.c
    prior = conn.execute(
        select(ev.data, ev.t_ms, ev.end_ms).where(ev.participant_id == owner.participant_id,
                                                  ev.kind == "import.coverage",
                                                  ev.t_ms < end, ev.end_ms > start)
    ).all()
    mine = (t.sample.c.participant_id == owner.participant_id, t.sample.c.source != "probe")
    overlap = conn.execute(
        select(func.count()).where(*mine, t.sample.c.t_ms >= start, t.sample.c.t_ms < end)
    ).scalar_one()
    if not overlap and not prior:
        return None
    for data, _, _ in prior:
        d = orjson.loads(data) if data else {}
        if d.get("sha256") == dump.sha256:
            return f"this file ({dump.name}) was imported before: its {overlap} samples are stored already"
    if prior:
        d = orjson.loads(prior[0][0]) if prior[0][0] else {}
        return (f"the {owner.role} of session {owner.session_id} already has this call's span from an earlier "
                f"import of {d.get('file', 'another dump')} ({d.get('format', '?')}; {overlap} samples overlap): "
                "the .txt and .gz of one call, or two downloads of one page, hold the same polls")
    return (f"the {owner.role} of session {owner.session_id} already has {overlap} samples in the dump's time span "
            "(from the live plugin or another import)")


def import_dump(engine: Engine, settings: Settings, path: Path, session_id: int, role: str,
                pcs: list[str] | None = None) -> ImportResult:
    dump = load_dump(path, settings.import_max_bytes)
    timelines = select_connections(dump, pcs)
    built = build(timelines)
    cov = [coverage_of(tl, built.before) for tl in timelines]
    if not built.samples:
        raise DumpError(f"{path.name}: the dump holds no interval to import (one poll per connection at most)")
    events = build_events(timelines, built, dump, cov)
    start = min([built.samples[0]["startMs"], *(e["tMs"] for e in built.before)])
    end = built.samples[-1]["startMs"] + built.samples[-1]["intervalMs"]
    with engine.begin() as conn:
        owner = _owner(conn, session_id, role)
        why = _already(conn, owner, dump, start, end)
        if why:
            raise ImportRefused(why)
        mine = (t.sample.c.participant_id == owner.participant_id, t.sample.c.source != "probe")
        last = conn.execute(select(func.max(t.sample.c.seq)).where(*mine)).scalar()
        first_seq = 0 if last is None else int(last) + 1
        for i, s in enumerate(built.samples):
            s["seq"] = first_seq + i
        for chunk in _chunks(built.samples, settings.max_batch_samples):
            msg = {"type": "samples", "schema": SCHEMA_ID, "samples": chunk, "events": []}
            try:
                batch = protocol.validate_batch(msg, settings)
            except protocol.Refusal as r:
                raise DumpError(f"the dump produced a sample the ingest contract refuses: {r.reason}") from None
            rows, _ = protocol.to_rows(batch, owner)
            insert_samples(conn, rows)
        for chunk in _chunks(events, settings.max_batch_events):
            msg = {"type": "samples", "schema": SCHEMA_ID, "samples": [], "events": chunk}
            try:
                batch = protocol.validate_batch(msg, settings)
            except protocol.Refusal as r:
                raise DumpError(f"the dump produced an event the ingest contract refuses: {r.reason}") from None
            _, erows = protocol.to_rows(batch, owner)
            insert_events(conn, erows)
        # Imports land after the fact, often in a finished session whose
        # quality summary is cached as final: drop it so reports recompute.
        invalidate_quality(conn, session_id)
    return ImportResult(dump.format, len(timelines), len(built.samples), len(events), first_seq, start, end, cov)
