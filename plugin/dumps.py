"""Reading Chromium's WebRTC dumps into per-connection timelines of stats reports.

Two formats, both saved from ``chrome://webrtc-internals`` (docs/integrate-browser.md,
"Importing a dump"), each either plain or gzip-compressed:

- the "webrtc-internals dump" (``webrtc_internals_dump.txt``/``.gz``): one JSON
  object; ``PeerConnections`` maps ``"<rid>-<lid>"`` to ``{rtcConfiguration,
  updateLog, stats}``; ``stats`` maps ``"<statsId>-<name>"`` to ``{statsType,
  startTime, endTime, values}`` where ``values`` is a JSON array encoded as a
  string, one value per poll; ``"<statsId>-timestamp"`` holds each poll's time.
  Series names made by the page are bracketed and may contain ``-``, so a key
  is split at the longest known stats id, never at its last ``-``.
- the "rtcstats dump" (``rtcstats_dump``/``.gz``): a line ``RTCStatsDump``, a
  JSON header line, then one JSON array per line ``[method, pcId, value,
  ..., time]`` where ``time`` is epoch ms on the first line and the ms since
  the previous line after that; ``getStats`` lines carry a whole report
  (objects may also be delta-compressed: fields that did not change left out).

Anything malformed or truncated raises DumpError with the reason; nothing is
guessed.
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

Report = dict[str, dict[str, Any]]
STATE_EVENTS = {
    "iceconnectionstatechange": "ice.state",
    "oniceconnectionstatechange": "ice.state",
    "connectionstatechange": "connection.state",
    "onconnectionstatechange": "connection.state",
}
# Reports of one getStats() call share a timestamp; polls are about a second apart.
SAME_POLL_MS = 250.0


class DumpError(Exception):
    """The file is not a usable dump; the message says why."""


@dataclass
class Timeline:
    key: str
    polls: list[tuple[float, Report]] = field(default_factory=list)
    events: list[tuple[float, str, str]] = field(default_factory=list)  # (t_ms, kind, state)
    created_ms: float | None = None  # set when the dump saw the connection being created


def read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DumpError(f"cannot read {path}: {e.strerror or e}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise DumpError(f"{path.name}: the gzip data is truncated or corrupt ({e})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DumpError(f"{path.name}: not UTF-8 text at byte {e.start}") from None


def load_dump(path: Path) -> tuple[str, list[Timeline]]:
    """(format name, timelines) of a dump file in either format."""
    text = read_text(path)
    if text.lstrip().startswith("RTCStatsDump"):
        return "rtcstats", parse_rtcstats(text)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise DumpError(f"{path.name}: not valid JSON (truncated?): {e.msg} at line {e.lineno}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("PeerConnections"), dict):
        raise DumpError(f"{path.name}: no 'PeerConnections' object: not a webrtc-internals dump")
    return "webrtc-internals", parse_internals(doc)


def _iso_ms(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000
    except ValueError:
        return None


def _series(key: str, entry: Any) -> list[Any]:
    if not isinstance(entry, dict) or not isinstance(entry.get("values"), str):
        raise DumpError(f"stats series {key!r} has no 'values' string")
    try:
        values = json.loads(entry["values"])
    except json.JSONDecodeError:
        raise DumpError(f"stats series {key!r}: 'values' is not a JSON array") from None
    if not isinstance(values, list):
        raise DumpError(f"stats series {key!r}: 'values' is not a JSON array")
    return values


def _state(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    v = value.strip().strip('"')
    return v or None


def parse_internals(doc: dict[str, Any]) -> list[Timeline]:
    out: list[Timeline] = []
    for key, pc in doc["PeerConnections"].items():
        if not isinstance(pc, dict):
            raise DumpError(f"PeerConnections[{key!r}] is not an object")
        stats = pc.get("stats", {})
        if not isinstance(stats, dict):
            raise DumpError(f"PeerConnections[{key!r}].stats is not an object")
        tl = Timeline(key=str(key))
        ids = sorted((k[: -len("-timestamp")] for k in stats if k.endswith("-timestamp")), key=len, reverse=True)
        points: dict[str, list[dict[str, Any]]] = {}
        for sid in ids:
            ts_entry = stats[sid + "-timestamp"]
            times = _series(sid + "-timestamp", ts_entry)
            if not all(isinstance(t, int | float) for t in times):
                raise DumpError(f"stats series {sid}-timestamp holds a non-number")
            kind = ts_entry.get("statsType")
            points[sid] = [{"id": sid, "type": kind, "timestamp": float(t)} for t in times]
        for k, entry in stats.items():
            sid = next((i for i in ids if k.startswith(i + "-")), None)
            if sid is None:
                raise DumpError(f"stats series {k!r} has no matching '<id>-timestamp' series")
            name = k[len(sid) + 1 :]
            if name == "timestamp" or name.startswith("["):
                continue  # computed by the page, not by WebRTC
            values = _series(k, entry)
            pts = points[sid]
            if len(values) > len(pts):
                raise DumpError(f"stats series {k!r} has more values than its timestamps")
            # A field that appeared late has fewer points: they end with the series
            # unless it also started with it.
            ts_start = stats[sid + "-timestamp"].get("startTime")
            offset = 0 if entry.get("startTime") == ts_start else len(pts) - len(values)
            for i, v in enumerate(values):
                pts[offset + i][name] = v
        _to_polls(tl, points)
        for item in pc.get("updateLog") or []:
            if not isinstance(item, dict):
                continue
            kind = STATE_EVENTS.get(str(item.get("type")))
            t = item.get("timestamp")
            t_ms = float(t) if isinstance(t, int | float) else _iso_ms(item.get("time"))
            state = _state(item.get("value"))
            if kind and state and t_ms is not None:
                tl.events.append((t_ms, kind, state))
        out.append(tl)
    return out


def _to_polls(tl: Timeline, points: dict[str, list[dict[str, Any]]]) -> None:
    """Group one connection's points into polls.

    Local objects carry the poll's own time. remote-inbound/outbound-rtp
    objects carry the time their RTCP report arrived instead, so they are
    placed by position: the page adds one point per poll while the object
    exists, which lines their points up with the last polls of their local
    stream (``localId``)."""
    local = sorted((p for sid, pts in points.items() for p in pts if not _remote(pts)), key=lambda p: p["timestamp"])
    where: dict[str, list[int]] = {}
    for p in local:
        if tl.polls and p["timestamp"] - tl.polls[-1][0] <= SAME_POLL_MS:
            tl.polls[-1][1][p["id"]] = p
        else:
            tl.polls.append((p["timestamp"], {p["id"]: p}))
        where.setdefault(p["id"], []).append(len(tl.polls) - 1)
    everywhere = list(range(len(tl.polls)))
    for sid, pts in points.items():
        if not _remote(pts):
            continue
        slots = where.get(str(pts[-1].get("localId")), everywhere)
        for p, slot in zip(reversed(pts), reversed(slots), strict=False):
            tl.polls[slot][1][sid] = p


def _remote(pts: list[dict[str, Any]]) -> bool:
    return bool(pts) and str(pts[0].get("type", "")).startswith("remote-")


def parse_rtcstats(text: str) -> list[Timeline]:
    lines = text.split("\n")
    if len(lines) < 2:
        raise DumpError("rtcstats dump has no header line")
    try:
        header = json.loads(lines[1])
    except json.JSONDecodeError:
        raise DumpError("rtcstats dump: the second line is not a JSON header") from None
    if not isinstance(header, dict) or "fileFormat" not in header:
        raise DumpError("rtcstats dump: the header has no fileFormat")
    timelines: dict[str, Timeline] = {}
    state: dict[str, Report] = {}
    t: float | None = None
    for n, line in enumerate(lines[2:], start=3):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            raise DumpError(f"rtcstats dump: line {n} is not valid JSON (truncated?)") from None
        if not isinstance(item, list) or len(item) < 3 or not isinstance(item[0], str):
            raise DumpError(f"rtcstats dump: line {n} is not a [method, id, value, ..., time] array")
        stamp = item[-1]
        if isinstance(stamp, int | float) and not isinstance(stamp, bool):
            # Epoch ms on the first timed line, then the gap since the line before.
            t = float(stamp) if t is None or stamp > 1e12 else t + float(stamp)
        if t is None:
            raise DumpError(f"rtcstats dump: line {n} comes before any absolute time")
        method, pc = item[0], item[1]
        if not isinstance(pc, str):
            continue
        tl = timelines.setdefault(pc, Timeline(key=pc))
        if method == "create":
            tl.created_ms = t
        elif method in STATE_EVENTS:
            st = _state(item[2])
            if st:
                tl.events.append((t, STATE_EVENTS[method], st))
        elif method == "getStats":
            report = item[2]
            if not isinstance(report, dict):
                raise DumpError(f"rtcstats dump: line {n}: getStats value is not an object")
            when = report.get("timestamp") if isinstance(report.get("timestamp"), int | float) else None
            cur = state.setdefault(pc, {})
            full: Report = {}
            for sid, obj in report.items():
                if sid == "timestamp":
                    continue
                if not isinstance(obj, dict):
                    raise DumpError(f"rtcstats dump: line {n}: stats {sid!r} is not an object")
                merged = {**cur.get(sid, {}), **obj, "id": sid}
                if "timestamp" not in obj:
                    merged["timestamp"] = float(when if when is not None else t)
                full[sid] = merged
            # Full reports list every object; a delta report leaves unchanged ones out.
            delta = any("type" not in o for o in report.values() if isinstance(o, dict))
            state[pc] = {**cur, **full} if delta else full
            tl.polls.append((float(when if when is not None else t), dict(state[pc])))
    return [tl for tl in timelines.values() if tl.polls or tl.events]
