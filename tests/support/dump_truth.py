"""The captured corpus (tests/data/dumps, made by tests/support/dump_capture.py) and its truth.

Two independent views to hold the importer against:
- ``Relay``: the impairment relay's own per-(crossing, SSRC) packet counts,
  sampled every 100 ms during the call, and the phase marks;
- ``RawDump``: a webrtc-internals .txt read plainly with ``json`` (not with
  the importer's parser): each stats object's values by poll time.
"""

from __future__ import annotations

import bisect
import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

DUMPS = Path(__file__).resolve().parents[1] / "data" / "dumps"


class Relay:
    def __init__(self, path: Path = DUMPS / "truth.json") -> None:
        self.doc: dict[str, Any] = json.loads(path.read_text())
        self.marks: dict[str, float] = self.doc["marks"]
        self.counts = self.doc["rtp_counts"]
        self.times = [c["t"] for c in self.counts]

    def at(self, t_ms: float, crossing: str, ssrc: int) -> tuple[int, int]:
        """(forwarded, dropped) RTP packets of one stream on one crossing by ``t_ms``."""
        i = bisect.bisect_right(self.times, t_ms) - 1
        if i < 0:
            return 0, 0
        fwd, dropped = self.counts[i]["rtp"].get(f"{crossing}:{ssrc}", [0, 0])
        return int(fwd), int(dropped)

    def dropped(self, t_ms: float, ssrc: int, crossings: tuple[str, ...] = ("down",)) -> int:
        """Dropped by the last count sampled at or before ``t_ms``."""
        return sum(self.at(t_ms, c, ssrc)[1] for c in crossings)

    def dropped_by(self, t_ms: float, ssrc: int) -> int:
        """Dropped by the first count sampled at or after ``t_ms`` (an upper bound at ``t_ms``)."""
        i = bisect.bisect_left(self.times, t_ms)
        return self.dropped(self.times[min(i, len(self.times) - 1)], ssrc)

    @property
    def end(self) -> float:
        return float(self.times[-1])


def _iso_ms(s: str) -> int:
    return int(round(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000))


class RawDump:
    """One connection of a webrtc-internals .txt dump, read plainly."""

    def __init__(self, path: Path) -> None:
        doc = json.loads(path.read_text())
        (self.key, pc), = doc["PeerConnections"].items()
        self.stats: dict[str, Any] = pc["stats"]
        self.log = pc["updateLog"]

    def times(self, sid: str) -> list[float]:
        return [float(v) for v in json.loads(self.stats[f"{sid}-timestamp"]["values"])]

    def series(self, sid: str, field: str) -> dict[float, Any]:
        """Poll time -> value, for a series present at every poll of its span."""
        entry = self.stats[f"{sid}-{field}"]
        values = json.loads(entry["values"])
        times = self.times(sid)
        start = next(i for i, t in enumerate(times) if math.floor(t) == _iso_ms(entry["startTime"]))
        return dict(zip(times[start:start + len(values)], values, strict=True))

    def ids(self, stats_type: str, **match: Any) -> list[str]:
        out = []
        for key, entry in self.stats.items():
            if key.endswith("-type") and entry.get("statsType") == stats_type:
                sid = key[: -len("-type")]
                if all(json.loads(self.stats[f"{sid}-{k}"]["values"])[-1] == v for k, v in match.items()):
                    out.append(sid)
        return out

    def stream_id(self, stats_type: str, ssrc: int) -> str:
        (sid,) = self.ids(stats_type, ssrc=ssrc)
        return sid
