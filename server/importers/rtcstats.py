"""Reading an rtcstats dump (chrome://webrtc-internals' second download button).

Format: a line ``RTCStatsDump``, a JSON header line (``{"fileFormat": 3}``),
then one JSON array per line ``[method, pcId, value, ..., time]`` where
``time`` is epoch ms on the first timed line and the ms since the previous
line after that. ``getStats`` lines carry one whole report: every stats
object with its own ``timestamp``. The time of a poll is the reports' own
(the local objects' ``timestamp``), not the line's: the line is written
when the report reached the page, up to half a second later. A field missing
from a report is missing in that poll, never the previous report's value.

Read line by line, keeping only the fields the importer uses
(server/importers/model.py), so memory does not grow with the file.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator
from typing import Any

from server.importers.model import (
    RTCP_TYPES,
    DumpError,
    Report,
    Timeline,
    clean_object,
    read_log,
)
from server.importers.source import DumpSource

MAX_LINE = 16 << 20  # an SDP or a full report is well under this


def _lines(src: DumpSource) -> Iterator[tuple[int, bytes]]:
    pending: list[bytes] = []
    size = 0
    n = 0
    while chunk := src.read():
        parts = chunk.split(b"\n")
        for part in parts[:-1]:
            pending.append(part)
            n += 1
            yield n, b"".join(pending)
            pending, size = [], 0
        if parts[-1]:
            pending.append(parts[-1])
            size += len(parts[-1])
            if size > MAX_LINE:
                raise DumpError(f"{src.name}: line {n + 1} is longer than {MAX_LINE:,} bytes: not an rtcstats dump")
    if pending:
        yield n + 1, b"".join(pending)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"the non-JSON number {name}")


class _Constant(str):
    pass


def _where_constant(raw: bytes) -> str:
    """The path of the first NaN/Infinity in a line, to name it."""
    def walk(v: Any, path: str) -> str | None:
        if isinstance(v, _Constant):
            return f"{path} is {v}"
        items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
        for k, x in items:
            hit = walk(x, f"{path}.{k}" if path else str(k))
            if hit:
                return hit
        return None

    found = walk(json.loads(raw, parse_constant=_Constant), "")
    return f"{found}, not a finite number" if found else "a non-JSON number"


def _poll_time(report: Report, line_ms: float) -> float:
    """The report's own time: its local objects' shared timestamp.

    Remote objects (remote-inbound-rtp and -outbound-rtp) carry the time their
    RTCP report arrived instead. A report with no timestamped local object
    falls back to the line's time."""
    local = [o["timestamp"] for o in report.values()
             if "timestamp" in o and o.get("type") not in RTCP_TYPES]
    return float(statistics.median(local)) if local else line_ms


def parse_rtcstats(src: DumpSource) -> list[Timeline]:
    lines = _lines(src)
    first = next(lines, None)
    if first is None or first[1].strip() != b"RTCStatsDump":
        raise DumpError(f"{src.name}: not an rtcstats dump (no 'RTCStatsDump' first line)")
    second = next(lines, None)
    try:
        header = json.loads(second[1]) if second else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict) or "fileFormat" not in header:
        raise DumpError(f"{src.name}: rtcstats dump without its JSON header line (fileFormat) on line 2")
    timelines: dict[str, Timeline] = {}
    logs: dict[str, list[tuple[float, str, Any]]] = {}
    t: float | None = None
    for n, raw in lines:
        if not raw.strip():
            continue
        try:
            item = json.loads(raw, parse_constant=_reject_constant)
        except ValueError as e:
            what = _where_constant(raw) if "non-JSON number" in str(e) else "not valid JSON (truncated?)"
            raise DumpError(f"{src.name}: line {n}: {what}") from None
        if not isinstance(item, list) or len(item) < 3 or not isinstance(item[0], str):
            raise DumpError(f"{src.name}: line {n} is not a [method, id, value, ..., time] array")
        stamp = item[-1]
        if isinstance(stamp, int | float) and not isinstance(stamp, bool):
            # Epoch ms on the first timed line, then the gap since the line before.
            t = float(stamp) if t is None or stamp > 1e12 else t + float(stamp)
        if t is None:
            raise DumpError(f"{src.name}: line {n} comes before any absolute time")
        method, pc = item[0], item[1]
        if not isinstance(pc, str):
            continue  # browser-wide lines (getUserMedia, the machine's description)
        tl = timelines.setdefault(pc, Timeline(key=pc))
        if method == "create":
            tl.created_ms = t
            if len(item) > 4 and isinstance(item[3], str):
                tl.url = item[3]
        if method != "getStats":
            logs.setdefault(pc, []).append((t, method, item[2]))
        else:
            report = item[2]
            if not isinstance(report, dict):
                raise DumpError(f"{src.name}: line {n}: the getStats value is not an object")
            poll: Report = {}
            for sid, obj in report.items():
                if not isinstance(obj, dict):
                    raise DumpError(f"{src.name}: line {n}: stats object {sid!r} is not an object")
                if "type" not in obj:
                    raise DumpError(
                        f"{src.name}: line {n}: stats object {sid!r} has no type: a delta-compressed report "
                        "(the rtcstats library's), where a missing field cannot be told from an unchanged one; "
                        "import the dump saved by chrome://webrtc-internals instead")
                kept = clean_object(f"line {n}: {sid}", obj)
                kept["id"] = sid
                poll[sid] = kept
            tl.series += len(poll)
            tl.polls.append((_poll_time(poll, t), poll))
    src.drain()
    for key, tl in timelines.items():
        tl.polls.sort(key=lambda p: p[0])
        read_log(tl, sorted(logs.get(key, []), key=lambda e: e[0]))
    return [tl for tl in timelines.values() if tl.polls or tl.events or tl.created_ms is not None]
