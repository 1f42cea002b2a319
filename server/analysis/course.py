"""A client's course: sessions in order, alliance against disruption,
the alliance-forming phase, and rupture flags.

Rupture rule (docs/methodology.md, "Rupture flags"): the client's Bond
score falls below their running level (the mean of all their earlier bond
ratings) by more than the Jacobson-Truax reliable-change threshold

    RC threshold = z x sqrt(2) x SD x sqrt(1 - r)

with r the Bond subscale's reliability and SD the spread of bond ratings
across the clinician's caseload. Without enough ratings to estimate SD no
session is flagged and the page says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from server.config import AnalysisConfig


@dataclass
class CourseInput:
    session_id: int
    number: int
    when_ms: int | None
    disrupted_minutes: int | None
    minutes: int | None
    verdict: str | None
    bond: float | None
    goal: float | None
    task: float | None
    total: float | None
    # Disrupted minutes per side (server/analysis/attribution.py); None when not attributed.
    side_minutes: dict[str, int] | None = None


@dataclass
class CourseRow:
    session_id: int
    number: int
    when_ms: int | None
    early: bool
    disrupted_minutes: int | None
    minutes: int | None
    verdict: str | None
    disrupted: bool
    bond: float | None
    goal: float | None
    task: float | None
    total: float | None
    running_level: float | None
    drop: float | None
    rupture: bool
    side_minutes: dict[str, int] | None = None


@dataclass
class Course:
    rows: list[CourseRow]
    threshold: float | None
    reference_sd: float | None
    reference_n: int
    suggestion: str
    # Over the attributed sessions: disrupted minutes in all, and how many of them
    # were on the client's connection, on the clinician's, between the two, undetermined.
    side_totals: dict[str, int] | None = None
    disrupted_total: int = 0

    @property
    def client_share_pct(self) -> float | None:
        """Share of the course's disrupted minutes on the client's connection."""
        if not self.side_totals or not self.disrupted_total:
            return None
        return round(100.0 * self.side_totals.get("client", 0) / self.disrupted_total, 1)

    @property
    def clinician_share_pct(self) -> float | None:
        if not self.side_totals or not self.disrupted_total:
            return None
        return round(100.0 * self.side_totals.get("clinician", 0) / self.disrupted_total, 1)


def distinct(a: float, b: float) -> tuple[str, str]:
    """Two values with enough decimals that unequal values never read as equal
    ("fell 0.624, more than 0.619", not "fell 0.62, more than 0.62")."""
    for nd in (2, 3, 4):
        fa, fb = f"{a:.{nd}f}", f"{b:.{nd}f}"
        if fa != fb or a == b:
            return fa, fb
    return f"{a:.6f}", f"{b:.6f}"


def rci_threshold(sd: float, reliability: float, z: float) -> float:
    """Smallest fall in a score that is reliable change (Jacobson & Truax, 1991)."""
    se = sd * math.sqrt(1.0 - reliability)
    return z * math.sqrt(2.0) * se


def reference_sd(bonds: list[float], cfg: AnalysisConfig) -> float | None:
    """Sample SD of bond ratings in the caseload, or None below the minimum count."""
    if len(bonds) < cfg.rci_min_ratings:
        return None
    sd = float(np.std(np.asarray(bonds, dtype=float), ddof=1))
    return sd if sd > 0 else None


def analyse_course(items: list[CourseInput], caseload_bonds: list[float], cfg: AnalysisConfig) -> Course:
    items = sorted(items, key=lambda i: i.number)
    sd = reference_sd(caseload_bonds, cfg)
    thr = rci_threshold(sd, cfg.bond_reliability, cfg.rci_z) if sd is not None else None
    rows: list[CourseRow] = []
    earlier: list[float] = []
    for it in items:
        running = float(np.mean(earlier)) if earlier else None
        drop = running - it.bond if running is not None and it.bond is not None else None
        rupture = thr is not None and drop is not None and drop > thr
        disrupted = it.disrupted_minutes is not None and it.disrupted_minutes >= cfg.course_disrupted_minutes
        rows.append(
            CourseRow(
                session_id=it.session_id, number=it.number, when_ms=it.when_ms,
                early=it.number <= cfg.early_sessions, disrupted_minutes=it.disrupted_minutes,
                minutes=it.minutes, verdict=it.verdict, disrupted=disrupted,
                bond=it.bond, goal=it.goal, task=it.task, total=it.total,
                running_level=None if running is None else round(running, 2),
                # Three decimals: the flag is decided on the unrounded values, and
                # the page must be able to show a drop just above the threshold as such.
                drop=None if drop is None else round(drop, 3), rupture=rupture, side_minutes=it.side_minutes,
            )
        )
        if it.bond is not None:
            earlier.append(it.bond)
    attributed = [r for r in rows if r.side_minutes is not None and r.disrupted_minutes is not None]
    totals = {k: sum((r.side_minutes or {}).get(k, 0) for r in attributed)
              for k in ("client", "clinician", "between", "undetermined")} if attributed else None
    return Course(rows, None if thr is None else round(thr, 3), None if sd is None else round(sd, 3),
                  len(caseload_bonds), suggest(rows, thr, cfg), totals,
                  sum(r.disrupted_minutes or 0 for r in attributed))


def suggest(rows: list[CourseRow], threshold: float | None, cfg: AnalysisConfig) -> str:
    """One short, factual suggestion for the next session, from the last one."""
    if not rows:
        return "No sessions yet."
    last = rows[-1]
    n = last.number
    parts: list[str] = []
    if last.rupture and last.drop is not None and threshold is not None:
        drop, thr = distinct(last.drop, threshold)
    if last.rupture and last.disrupted:
        parts.append(
            f"Session {n} had {last.disrupted_minutes} disrupted minutes and the client's bond rating fell "
            f"{drop} below their running level (more than the reliable-change threshold of "
            f"{thr}). Consider naming the connection problems at the start of the next session and "
            "checking in about how the last session felt for the client."
        )
    elif last.rupture:
        parts.append(
            f"The client's bond rating in session {n} fell {drop} below their running level (more than "
            f"the reliable-change threshold of {thr}) without notable connection problems. Consider "
            "checking in about the relationship in the next session."
        )
    elif last.disrupted:
        parts.append(
            f"Session {n} had {last.disrupted_minutes} disrupted minutes; the bond rating did not fall reliably. "
            "Consider acknowledging the connection problems briefly and agreeing a fallback (for example a phone "
            "call) for the next time it happens."
        )
    elif last.bond is None:
        parts.append(f"Session {n} has no client bond rating yet.")
    else:
        parts.append(f"Session {n}: no reliable fall in the bond rating and no notable connection problems.")
    if threshold is None:
        parts.append("Rupture flags are not assessed yet: the caseload has too few bond ratings "
                     f"(at least {cfg.rci_min_ratings} needed).")
    if last.early:
        parts.append(f"This is within the first {cfg.early_sessions} sessions, while the alliance is being formed.")
    return " ".join(parts)
