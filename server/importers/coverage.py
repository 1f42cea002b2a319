"""What span of a connection a dump covers, and what it misses, in words and as data."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from server.importers.model import PAGE_MAX_POINTS, Timeline, clock


@dataclass
class Coverage:
    pc: str
    url: str | None
    from_ms: int  # first poll
    to_ms: int  # last poll
    polls: int
    created_ms: int | None
    watched_from_creation: bool
    truncated: bool
    synthetic_skipped: int
    # The 'before the dump' interval: totals of the first poll, from when to when, how its start is known.
    before_from_ms: int | None
    before_basis: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        span = (self.to_ms - self.from_ms) / 1000
        out = [f"connection {self.pc}: stats from {clock(self.from_ms)} to {clock(self.to_ms)} "
               f"({span:.1f} s, {self.polls} polls)"]
        if self.before_basis is None:
            out.append("  nothing missing at the start: the dump saw the connection created and counts from there")
        else:
            if self.truncated:
                why = (f"the page keeps the last {PAGE_MAX_POINTS} polls of each series, so the start of this "
                       "connection's history is not in the dump")
            else:
                why = "the page was opened after the connection began (mid-call), so it has no history before"
            if self.before_from_ms is not None and self.before_basis == "created":
                since = f"from its creation at {clock(self.before_from_ms)}"
            elif self.before_from_ms is not None:
                since = f"from about {clock(self.before_from_ms)} (estimated from the audio received)"
            else:
                since = "from an unknown start"
            gap = "" if self.before_from_ms is None else f", {(self.from_ms - self.before_from_ms) / 1000:.1f} s"
            out.append(f"  missing: the call {since} to {clock(self.from_ms)}{gap}: {why}; its totals are stored "
                       "as one 'before the dump' interval (event import.before_dump), not spread over samples")
        if self.synthetic_skipped:
            out.append(f"  {self.synthetic_skipped} log entries the page wrote when it was opened (a snapshot of "
                       "the state then) were not stored as events")
        return out


def coverage_of(tl: Timeline, before: list[dict[str, Any]]) -> Coverage:
    b = next((e for e in before if e["pc"] == tl.key), None)
    return Coverage(
        pc=tl.key, url=tl.url, from_ms=int(round(tl.polls[0][0])), to_ms=int(round(tl.polls[-1][0])),
        polls=len(tl.polls), created_ms=None if tl.created_ms is None else int(round(tl.created_ms)),
        watched_from_creation=tl.watched_from_creation, truncated=tl.truncated, synthetic_skipped=tl.synthetic,
        before_from_ms=None if b is None or b["startBasis"] == "unknown" else b["tMs"],
        before_basis=None if b is None else b["startBasis"],
    )

