"""Who needs attention: one mark per client of a caseload, with its reason.

From the client's course (server/analysis/course.py), as of ``now_ms``:

- red: the client's bond rating fell reliably below their usual level (a
  rupture flag) in a session within the last ``attention_weeks``, or in the
  last rated session, however long ago;
- amber: no such rupture, but within those weeks at least
  ``attention_disrupted_sessions`` sessions were disrupted, or the last
  session was, or a session that took place has no client rating;
- green: none of these.

Clients sort red first, then amber, then green; within a colour the most
recent concern comes first. docs/reports.md ("Who needs attention") is the
clinician's description of the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from server.analysis.course import Course, CourseRow
from server.config import AnalysisConfig

WEEK_MS = 7 * 86_400_000
Level = Literal["red", "amber", "green"]
RANK = {"red": 0, "amber": 1, "green": 2}


@dataclass
class Attention:
    client_id: int
    code: str
    level: Level
    reasons: list[str]
    sessions: int
    last_ms: int | None
    last_rupture: CourseRow | None
    recent_sessions: int
    recent_disrupted: int
    recent_unrated: int
    mean_disrupted: float | None
    concern_ms: int = 0
    unrated_numbers: list[int] = field(default_factory=list)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def _held(r: CourseRow) -> bool:
    """A session that took place: it has connection data or a rating."""
    return r.minutes is not None and r.minutes > 0 or r.bond is not None


def assess(client_id: int, code: str, course: Course, now_ms: int, cfg: AnalysisConfig) -> Attention:
    rows = course.rows
    since = now_ms - cfg.attention_weeks * WEEK_MS
    recent = [r for r in rows if r.when_ms is not None and r.when_ms >= since]
    ruptures = [r for r in rows if r.rupture]
    last_rupture = ruptures[-1] if ruptures else None
    rated = [r for r in rows if r.bond is not None]
    disrupted = [r for r in recent if r.disrupted]
    unrated = [r for r in recent if _held(r) and r.bond is None]
    measured = [r.disrupted_minutes for r in rows if r.disrupted_minutes is not None and r.minutes]
    started = [r.when_ms for r in rows if r.when_ms is not None]
    a = Attention(client_id, code, "green", [], len(rows), max(started) if started else None, last_rupture,
                  len(recent), len(disrupted), len(unrated),
                  round(sum(measured) / len(measured), 1) if measured else None,
                  unrated_numbers=[r.number for r in unrated])
    w = cfg.attention_weeks
    if last_rupture is not None and (last_rupture in recent or (rated and rated[-1] is last_rupture)):
        a.level = "red"
        where = "a disrupted session" if last_rupture.disrupted else "a session with a good connection"
        a.reasons.append(f"bond fell {last_rupture.drop:.2f} below their usual level in session "
                         f"{last_rupture.number}, {where}")
        a.concern_ms = last_rupture.when_ms or 0
    last = rows[-1] if rows else None
    if len(disrupted) >= cfg.attention_disrupted_sessions or (last is not None and last.disrupted and last in recent):
        if a.level == "green":
            a.level = "amber"
        n = len(disrupted)
        a.reasons.append(f"{n} of {len(recent)} sessions in the last {w} weeks had connection problems" if n > 1
                         else f"the last session ({last.number if last else ''}) had connection problems")
        a.concern_ms = max(a.concern_ms, max(r.when_ms or 0 for r in disrupted) if disrupted else 0)
    if unrated:
        if a.level == "green":
            a.level = "amber"
        numbers = ", ".join(str(r.number) for r in unrated)
        a.reasons.append(f"no client rating for session {numbers}" if len(unrated) == 1
                         else f"no client rating for sessions {numbers}")
        a.concern_ms = max(a.concern_ms, max(r.when_ms or 0 for r in unrated))
    if a.level == "green":
        a.reasons.append(f"no rupture, connection problems or missing ratings in the last {w} weeks" if recent
                         else f"no sessions in the last {w} weeks")
    return a


def rank(items: list[Attention]) -> list[Attention]:
    """Red first, then amber, then green; the most recent concern first within each."""
    return sorted(items, key=lambda a: (RANK[a.level], -a.concern_ms, a.code))
