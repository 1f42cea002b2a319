"""Reading a webrtc-internals dump (``webrtc_internals_dump.txt`` / ``.gz``).

One JSON object; ``PeerConnections`` maps ``"<rid>-<lid>"`` to ``{url,
rtcConfiguration, updateLog, stats}``. ``stats`` maps ``"<statsId>-<name>"``
to ``{statsType, startTime, endTime, values}``: ``values`` is a JSON array
encoded as a string, one value per poll in which the field was present, and
startTime/endTime are the ISO times (whole ms) of its first and last point.
``"<statsId>-timestamp"`` holds the object's own timestamp at every poll.

Every value is placed by time: a field's series runs from the poll whose
timestamp is its startTime to the one that is its endTime; a series with
fewer values than polls in that span has gaps whose places the dump does
not record, so its values are left out (and counted in ``unplaced``) rather
than shifted. remote-inbound/outbound-rtp objects carry the time their RTCP
report arrived, not the poll's: the page adds one point per poll while the
object exists, so they are placed by position among the polls of their
local stream (``localId``), and each RTCP time must precede its poll.

The page keeps the last 1000 points of each series (``PAGE_MAX_POINTS``):
a full series means the start of the history was cut.

Parsed as a stream of JSON tokens (ijson), keeping only the fields the
importer uses, so memory does not grow with the file.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

import ijson

from server.importers.model import (
    KEEP_FIELDS,
    PAGE_MAX_POINTS,
    RTCP_TYPES,
    SAME_POLL_MS,
    DumpError,
    Timeline,
    clean_object,
    read_log,
)
from server.importers.source import DumpSource

MAX_TOKEN = 8 << 20


class _Series:
    __slots__ = ("kind", "start", "end", "values")

    def __init__(self) -> None:
        self.kind: Any = None
        self.start: Any = None
        self.end: Any = None
        self.values: list[Any] | None = None


class _Pc:
    def __init__(self, key: str) -> None:
        self.key = key
        self.url: str | None = None
        self.series: dict[str, _Series] = {}
        self.total_series = 0
        self.log: list[dict[str, Any]] = []


def _iso_ms(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000
    except ValueError:
        return None


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _wanted(name: str) -> bool:
    if name.endswith("-timestamp"):
        return True
    i = name.rfind("-")
    return i > 0 and not name.endswith("]") and name[i + 1:] in KEEP_FIELDS


class _TokenBound:
    """Refuses a run of more than MAX_TOKEN bytes without a double quote: no token of a real dump
    (a series' values, an SDP) is that long, and the parser would have to hold it whole."""

    def __init__(self, src: DumpSource) -> None:
        self.src = src
        self.run = 0

    def read(self, n: int) -> bytes:
        data = self.src.read(n)
        first = data.find(b'"')
        if first < 0:
            self.run += len(data)
        else:
            longest = self.run + first
            self.run = len(data) - data.rfind(b'"') - 1
            self.run = max(self.run, 0) if longest <= MAX_TOKEN else longest
        if self.run > MAX_TOKEN:
            raise DumpError(f"{self.src.name}: holds a value longer than {MAX_TOKEN:,} bytes: not a "
                            "webrtc-internals dump")
        return data


def _tokens(src: DumpSource, where: list[Any]) -> Any:
    try:
        yield from ijson.basic_parse(_TokenBound(src), use_float=True)
    except ijson.JSONError as e:
        at = ".".join(str(p) for p in where) or "the top level"
        first = str(e).splitlines()[0] if str(e) else "invalid"
        hint = " (truncated?)" if "premature EOF" in first or "incomplete" in first.lower() else \
            " (NaN and Infinity are not JSON)" if "invalid char" in first else ""
        raise DumpError(f"{src.name}: not valid JSON at {at}: {first}{hint}") from None


def parse_internals(src: DumpSource) -> list[Timeline]:
    """Timelines of every connection of a webrtc-internals dump."""
    pcs: dict[str, _Pc] = {}
    stack: list[list[Any]] = []  # [container kind, current key or index]
    builder: ijson.ObjectBuilder | None = None
    depth = 0
    target: tuple[Any, ...] = ()
    saw_pcs = False
    path: list[Any] = []
    first = True
    for ev, val in _tokens(src, path):
        if first:
            first = False
            if ev != "start_map":
                raise DumpError(f"{src.name}: not a webrtc-internals dump (the file is not a JSON object)")
        if builder is not None:
            builder.event(ev, val)
            depth += 1 if ev in ("start_map", "start_array") else -1 if ev in ("end_map", "end_array") else 0
            if depth == 0:
                _take(pcs, target, builder.value, src.name)
                builder = None
            continue
        if ev == "map_key":
            stack[-1][1] = val
            path[:] = [f[1] for f in stack]
            continue
        if ev in ("end_map", "end_array"):
            stack.pop()
            continue
        if stack and stack[-1][0] == "array":
            stack[-1][1] += 1
        here = tuple(f[1] for f in stack)
        if len(here) == 4 and here[0] == "PeerConnections" and here[2] in ("stats", "updateLog"):
            if here[2] == "stats":
                pcs.setdefault(str(here[1]), _Pc(str(here[1]))).total_series += 1
            target = here
            builder = ijson.ObjectBuilder()
            builder.event(ev, val)
            depth = 1 if ev in ("start_map", "start_array") else 0
            if depth == 0:
                _take(pcs, target, builder.value, src.name)
                builder = None
            continue
        if ev in ("start_map", "start_array"):
            if here == ("PeerConnections",):
                if ev != "start_map":
                    raise DumpError(f"{src.name}: 'PeerConnections' is not an object")
                saw_pcs = True
            if len(here) == 2 and here[0] == "PeerConnections":
                if ev != "start_map":
                    raise DumpError(f"{src.name}: PeerConnections[{here[1]!r}] is not an object")
                pcs.setdefault(str(here[1]), _Pc(str(here[1])))
            stack.append(["map" if ev == "start_map" else "array", None if ev == "start_map" else -1])
            continue
        if len(here) == 3 and here[0] == "PeerConnections" and here[2] == "url" and isinstance(val, str):
            pcs.setdefault(str(here[1]), _Pc(str(here[1]))).url = val
    src.drain()
    if not saw_pcs:
        raise DumpError(f"{src.name}: no 'PeerConnections' object: not a webrtc-internals dump")
    return [_timeline(pc, src.name) for pc in pcs.values()]


def _take(pcs: dict[str, _Pc], where: tuple[Any, ...], value: Any, name: str) -> None:
    pc = pcs.setdefault(str(where[1]), _Pc(str(where[1])))
    if where[2] == "updateLog":
        if isinstance(value, dict):
            pc.log.append(value)
        return
    key = str(where[3])
    if not _wanted(key):
        return
    if not isinstance(value, dict) or not isinstance(value.get("values"), str):
        raise DumpError(f"{name}: stats series {key!r} of connection {pc.key} has no 'values' string")
    s = _Series()
    s.kind, s.start, s.end = value.get("statsType"), value.get("startTime"), value.get("endTime")
    try:
        values = json.loads(value["values"], parse_constant=_reject_constant)
    except ValueError as e:
        if str(e) in ("NaN", "Infinity", "-Infinity"):
            raise DumpError(f"{name}: stats series {key!r} of connection {pc.key} holds {e}, not a finite "
                            "number") from None
        raise DumpError(f"{name}: stats series {key!r} of connection {pc.key}: 'values' is not a JSON "
                        "array") from None
    if not isinstance(values, list):
        raise DumpError(f"{name}: stats series {key!r} of connection {pc.key}: 'values' is not a JSON array")
    s.values = values
    pc.series[key] = s


def _timeline(pc: _Pc, name: str) -> Timeline:
    tl = Timeline(key=pc.key, url=pc.url, series=pc.total_series)
    _read_log(tl, pc.log)
    ids = sorted((k[: -len("-timestamp")] for k in pc.series if k.endswith("-timestamp")), key=len, reverse=True)
    times: dict[str, list[float]] = {}
    kinds: dict[str, str] = {}
    for sid in ids:
        ts = pc.series[sid + "-timestamp"]
        vals = ts.values or []
        for i, v in enumerate(vals):
            if v is None or isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise DumpError(f"{name}: connection {pc.key}: value {i} of series {sid}-timestamp is {v!r}, "
                                "not a time")
        times[sid] = [float(v) for v in vals]
        kinds[sid] = str(ts.kind or "")
        if len(vals) >= PAGE_MAX_POINTS:
            tl.truncated = True
    points: dict[str, list[dict[str, Any]]] = {
        sid: [{"id": sid, "type": kinds[sid], "timestamp": t} for t in times[sid]] for sid in ids}
    for key, s in pc.series.items():
        if key.endswith("-timestamp"):
            continue
        owner = next((i for i in ids if key.startswith(i + "-")), None)
        if owner is None:
            raise DumpError(f"{name}: connection {pc.key}: stats series {key!r} has no matching "
                            "'<id>-timestamp' series")
        sid = owner
        field = key[len(sid) + 1:]
        if field == "type":
            continue
        slots = _span(times[sid], s, len(s.values or []))
        if slots is None:
            raise DumpError(f"{name}: connection {pc.key}: stats series {key!r} has {len(s.values or [])} values "
                            f"from {s.start} to {s.end}, more than its object's polls in that span")
        if slots == -1:
            continue  # gaps whose places the dump does not record: left out, not shifted
        for i, v in enumerate(s.values or []):
            points[sid][slots + i][field] = v
    _to_polls(tl, points, name)
    return tl


def _span(times: list[float], s: _Series, n: int) -> int | None:
    """Index of the poll of a series' first value; -1 when the series has gaps inside its span;
    None when it cannot be the object's."""
    if n == 0:
        return -1
    a, b = _iso_ms(s.start), _iso_ms(s.end)
    if a is None or b is None:
        # No times given: only a series as long as its object's can be placed.
        return 0 if n == len(times) else None
    first = next((i for i, t in enumerate(times) if abs(math.floor(t) - a) <= 1), None)
    last = next((i for i in range(len(times) - 1, -1, -1) if abs(math.floor(times[i]) - b) <= 1), None)
    if first is None or last is None or last < first:
        return None
    polls = last - first + 1
    if n > polls:
        # Repeated timestamps (RTCP times) match more than one poll: count from the end.
        return None if n > len(times) else last - n + 1
    return first if n == polls else -1


def _clean(points: dict[str, list[dict[str, Any]]], name: str, key: str) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for sid, pts in points.items():
        out[sid] = [clean_object(f"{name}: connection {key}: stats {sid} at {p['timestamp']:.0f}", p) | {"id": sid}
                    for p in pts]
    return out


def _to_polls(tl: Timeline, raw: dict[str, list[dict[str, Any]]], name: str) -> None:
    points = _clean(raw, name, tl.key)
    remote = {sid for sid, pts in points.items() if pts and pts[0].get("type") in RTCP_TYPES}
    local = sorted((p for sid, pts in points.items() if sid not in remote for p in pts), key=lambda p: p["timestamp"])
    where: dict[str, list[int]] = {}
    for p in local:
        if tl.polls and p["timestamp"] - tl.polls[-1][0] <= SAME_POLL_MS and p["id"] not in tl.polls[-1][1]:
            tl.polls[-1][1][p["id"]] = p
        else:
            tl.polls.append((p["timestamp"], {p["id"]: p}))
        where.setdefault(p["id"], []).append(len(tl.polls) - 1)
    for sid in remote:
        pts = points[sid]
        local_id = next((p.get("localId") for p in reversed(pts) if p.get("localId")), None)
        slots = where.get(str(local_id))
        if slots is None or len(slots) < len(pts):
            raise DumpError(f"{name}: connection {tl.key}: cannot place the {len(pts)} points of {sid}: its local "
                            f"stream {local_id!r} has {0 if slots is None else len(slots)} polls")
        for p, slot in zip(reversed(pts), reversed(slots), strict=False):
            if p["timestamp"] > tl.polls[slot][0] + SAME_POLL_MS:
                raise DumpError(f"{name}: connection {tl.key}: {sid}'s point of {p['timestamp']:.0f} comes after "
                                f"the poll it would belong to ({tl.polls[slot][0]:.0f}): the series do not line up")
            tl.polls[slot][1][sid] = p


def _read_log(tl: Timeline, log: list[dict[str, Any]]) -> None:
    entries = []
    for item in log:
        t = item.get("timestamp")
        t_ms = float(t) if isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t) \
            else _iso_ms(item.get("time"))
        if t_ms is not None:
            entries.append((t_ms, str(item.get("type", "")), item.get("value")))
    read_log(tl, entries)
