"""Connection-check results as the clinician sees them on the report pages.

A check stores its verdict as a ``probe.check`` event on the session
(server/sidecar/run.py); this reads them back, per session, newest first.
Callers pass only session ids already limited to the clinician's caseload.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson
from sqlalchemy import select
from sqlalchemy.engine import Connection

from server.store import tables as t

# The clinician's words for each level (the client's are in check.WORDS).
LEVEL_TEXT = {
    "good": "Good",
    "fair": "Fair",
    "poor": "Poor",
    "incomplete": "Incomplete: not everything could be measured",
    "failed": "Failed: no test call could be set up",
}
FIGURE_TEXT = {
    "rtt_p95_ms": "delay", "loss_up": "loss (client to server)", "loss_down": "loss (server to client)",
    "freeze_ms_up": "freezes (client's picture)", "freeze_ms_down": "freezes (picture received)",
    "audio_gap_up": "sound gaps (client's sound)", "audio_gap_down": "sound gaps (sound received)",
}


@dataclass(frozen=True)
class CheckResult:
    session_id: int
    role: str
    t_ms: int
    level: str
    reasons: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return LEVEL_TEXT.get(self.level, self.level)

    @property
    def detail(self) -> str:
        """Why it is not good, in a few words ("" when good)."""
        parts = []
        if self.reasons and self.level in ("fair", "poor"):
            parts.append("because of " + ", ".join(self.reasons))
        if self.missing and self.level != "failed":
            parts.append("not measured: " + ", ".join(FIGURE_TEXT.get(m, m) for m in self.missing))
        return "; ".join(parts)


def check_results(conn: Connection, session_ids: Iterable[int]) -> dict[int, list[CheckResult]]:
    """Every stored check of these sessions, newest first per session."""
    ids = list(session_ids)
    out: dict[int, list[CheckResult]] = {}
    if not ids:
        return out
    q = (
        select(t.event.c.session_id, t.event.c.t_ms, t.event.c.data, t.participant.c.role)
        .join(t.participant, t.participant.c.id == t.event.c.participant_id)
        .where(t.event.c.kind == "probe.check", t.event.c.session_id.in_(ids))
        .order_by(t.event.c.session_id, t.event.c.t_ms.desc(), t.event.c.id.desc())
    )
    for row in conn.execute(q):
        try:
            verdict = orjson.loads(row.data).get("verdict") or {}
        except (orjson.JSONDecodeError, AttributeError):
            continue
        if not isinstance(verdict, dict) or not isinstance(verdict.get("level"), str):
            continue
        out.setdefault(row.session_id, []).append(CheckResult(
            row.session_id, row.role, int(row.t_ms), verdict["level"],
            [str(r) for r in verdict.get("reasons") or [] if isinstance(r, str)],
            [str(m) for m in verdict.get("missing") or [] if isinstance(m, str)],
        ))
    return out


def latest_client_check(results: dict[int, list[CheckResult]], session_id: int) -> CheckResult | None:
    """The client's most recent check of a session (the course page's column)."""
    return next((r for r in results.get(session_id, []) if r.role == "client"), None)
