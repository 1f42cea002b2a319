"""``bondline import webrtc-internals FILE --session ID --role ROLE``.

Turns a Chromium dump (plugin/dumps.py) into ``bondline.sample/1`` samples
with source ``"import"`` and stores them for one participant through the
ingest path's own validation and row building (server/ingest/protocol.py)
and the writer's insert (ON CONFLICT DO NOTHING), in one transaction: a bad
file, an unknown session or role, or samples already stored for that time
span store nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine

from plugin.chrome_stats import ChromeStatsReducer
from plugin.dumps import SAME_POLL_MS, DumpError, Timeline, load_dump
from server.analysis.quality import invalidate as invalidate_quality
from server.config import Settings
from server.ingest import protocol
from server.ingest.schema import SCHEMA_ID
from server.ingest.writer import EVENT_COLUMNS, SAMPLE_COLUMNS, _insert_sql
from server.sessions.tokens import TokenOwner
from server.store import tables as t

CONN_STATES = {"new", "connecting", "connected", "disconnected", "failed", "closed"}
ICE_STATES = {"new", "checking", "connected", "completed", "disconnected", "failed", "closed"}
MAX_INTERVAL_MS = 600_000


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


def _state_at(events: list[tuple[float, str, str]], kind: str, t_ms: float) -> str | None:
    last = None
    for when, k, state in events:
        if k == kind and when <= t_ms:
            last = state
    return last


def build_samples(timelines: list[Timeline]) -> list[dict[str, Any]]:
    """One sample per poll across all connections (polls of one moment merge)."""
    reducers = {tl.key: ChromeStatsReducer(count_from_zero=tl.created_ms is not None) for tl in timelines}
    events = {tl.key: tl.events for tl in timelines}
    flat = sorted(((when, tl.key, report) for tl in timelines for when, report in tl.polls), key=lambda x: x[0])
    groups: list[list[tuple[float, str, Any]]] = []
    for item in flat:
        g = groups[-1] if groups else None
        if g is not None and item[0] - g[0][0] <= SAME_POLL_MS and all(x[1] != item[1] for x in g):
            g.append(item)
        else:
            groups.append([item])
    created = [tl.created_ms for tl in timelines if tl.created_ms is not None]
    prev_t: float | None = min(created) if created else None
    samples: list[dict[str, Any]] = []
    for g in groups:
        when = g[0][0]
        interval = when - prev_t if prev_t is not None else None
        streams: list[dict[str, Any]] = []
        best: dict[str, Any] | None = None
        best_key = g[0][1]
        produced = False
        for _, key, report in g:
            got, conn, baseline = reducers[key].reduce(report, interval or 1000.0)
            if baseline:
                continue
            produced = True
            streams.extend(got)
            if conn is not None and (best is None or conn["_bytes"] > best["_bytes"]):
                best, best_key = conn, key
        prev_t = when
        if not produced or interval is None or interval < 50 or interval > MAX_INTERVAL_MS:
            continue  # a baseline, or a gap in the recording: no honest interval figures
        connection: dict[str, Any] = dict(best or {})
        connection.pop("_bytes", None)
        st = _state_at(events[best_key], "connection.state", when)
        ice = _state_at(events[best_key], "ice.state", when)
        if st in CONN_STATES:
            connection["state"] = st
        if ice in ICE_STATES:
            connection["iceState"] = ice
        connection["connections"] = len(g)
        samples.append({
            "startMs": int(round(when - interval)),
            "intervalMs": int(round(interval)),
            "source": "import",
            "streams": streams[:64],
            "connection": connection,
        })
    return samples


def build_events(timelines: list[Timeline], file_digest: str) -> list[dict[str, Any]]:
    out = []
    for tl in timelines:
        for i, (when, kind, state) in enumerate(tl.events):
            # Keyed on the file's content: importing the same file twice stores each event once.
            out.append({"key": f"import.{file_digest}.{tl.key}.{i}"[:80], "kind": kind, "tMs": int(when),
                        "state": state, "pc": tl.key})
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


def import_dump(engine: Engine, settings: Settings, path: Path, session_id: int, role: str,
                pcs: list[str] | None = None) -> ImportResult:
    fmt, timelines = load_dump(path)
    if pcs:
        unknown = set(pcs) - {tl.key for tl in timelines}
        if unknown:
            raise DumpError(f"no connection {sorted(unknown)} in the dump; it has {[tl.key for tl in timelines]}")
        timelines = [tl for tl in timelines if tl.key in pcs]
    samples = build_samples(timelines)
    if not samples:
        raise DumpError(f"{path.name}: the dump holds no stats history to import (at least two polls are needed)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    events = build_events(timelines, digest)
    start = samples[0]["startMs"]
    end = samples[-1]["startMs"] + samples[-1]["intervalMs"]
    dialect = engine.dialect.paramstyle
    sample_sql = _insert_sql("sample", SAMPLE_COLUMNS, dialect, "(participant_id, seq)")
    event_sql = _insert_sql("event", EVENT_COLUMNS, dialect, "(participant_id, client_key)")
    with engine.begin() as conn:
        owner = _owner(conn, session_id, role)
        # Probe samples measure another path and keep their own seq range (server/ingest/routes.py).
        mine = (t.sample.c.participant_id == owner.participant_id, t.sample.c.source != "probe")
        overlap = conn.execute(
            select(func.count()).where(*mine, t.sample.c.t_ms >= start, t.sample.c.t_ms < end)
        ).scalar_one()
        if overlap:
            raise ImportRefused(f"the {role} of session {session_id} already has {overlap} samples in the "
                                f"dump's time span; nothing imported (was this file imported before?)")
        last = conn.execute(select(func.max(t.sample.c.seq)).where(*mine)).scalar()
        first_seq = 0 if last is None else int(last) + 1
        for i, s in enumerate(samples):
            s["seq"] = first_seq + i
        for chunk in _chunks(samples, settings.max_batch_samples):
            msg = {"type": "samples", "schema": SCHEMA_ID, "samples": chunk, "events": []}
            try:
                batch = protocol.validate_batch(msg, settings)
            except protocol.Refusal as r:
                raise DumpError(f"the dump produced a sample the ingest contract refuses: {r.reason}") from None
            rows, _ = protocol.to_rows(batch, owner)
            conn.exec_driver_sql(sample_sql, rows)
        for chunk in _chunks(events, settings.max_batch_events):
            msg = {"type": "samples", "schema": SCHEMA_ID, "samples": [], "events": chunk}
            batch = protocol.validate_batch(msg, settings)
            _, erows = protocol.to_rows(batch, owner)
            conn.exec_driver_sql(event_sql, erows)
        # Imports land after the fact, often in a finished session whose
        # quality summary is cached as final: drop it so reports recompute.
        invalidate_quality(conn, session_id)
    return ImportResult(fmt, len(timelines), len(samples), len(events), first_seq, start, end)


def cmd_import(args: argparse.Namespace) -> int:
    from server.cli import _settings
    from server.store.db import make_engine

    settings = _settings(args)
    engine = make_engine(settings.sqlalchemy_url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        res = import_dump(engine, settings, Path(args.file), args.session, args.role, args.pc or None)
    except (DumpError, ImportRefused) as e:
        print(f"bondline import: error: {e}; nothing was stored", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    if res.format != args.expected and args.expected != "any":
        print(f"note: {args.file} is an {res.format} dump; imported it as such", file=sys.stderr)
    print(f"imported {res.samples} samples (seq {res.first_seq}..{(res.first_seq or 0) + res.samples - 1}) and "
          f"{res.events} events from {res.connections} connection(s) of a {res.format} dump "
          f"into session {args.session} ({args.role})")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    imp = sub.add_parser("import", help="import call statistics recorded elsewhere",
                         description="Import call statistics recorded outside Bondline as samples (source 'import').")
    isub = imp.add_subparsers(dest="import_command", required=True, metavar="FORMAT")
    for name, what in (("webrtc-internals", "a chrome://webrtc-internals dump (.txt or .gz)"),
                       ("rtcstats", "an rtcstats dump saved from chrome://webrtc-internals (plain or .gz)")):
        p = isub.add_parser(name, help=f"import {what}", description=f"Import {what}. Either dump format is "
                            "recognised from the file's content; a bad or truncated file stores nothing.")
        p.add_argument("file", metavar="FILE")
        p.add_argument("--session", type=int, required=True, metavar="ID", help="session id")
        p.add_argument("--role", required=True, choices=["clinician", "client"], help="whose browser made the dump")
        p.add_argument("--pc", action="append", metavar="KEY",
                       help="import only this connection (a PeerConnections key such as 9-1); repeatable")
        p.add_argument("--db", metavar="URL-or-path", help="SQLite file path or postgresql://... URL")
        p.set_defaults(handler=cmd_import, expected=name)
