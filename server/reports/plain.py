"""The report pages' plain sentences: what a clinician reads first.

Every number in them comes from the analysis (the caseload model, the
client's course, the session summary); these functions only put it in
words. Each sentence is a list of clauses, so another part of the report
can add one (issue 15's "whose connection": "...; mostly on the client's
connection") without rewording the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from server.analysis.attribution import Attribution, Incident, Leg
from server.analysis.caseload import ModelResult
from server.analysis.course import CourseRow, distinct
from server.analysis.scores import BOND
from server.analysis.summary import SessionSummary

# What the caseload model's outcome is, in a sentence ("...went with <this> about 0.4 points lower").
PLAIN_OUTCOMES = {
    BOND: "a client bond rating",
    "client.wai-sr-client.mean": "a client alliance rating",
    "client.wai-sr-client.goal": "a client goal rating",
    "client.wai-sr-client.task": "a client task rating",
    "therapist.wai-sr-therapist.bond": "your own bond rating",
    "therapist.wai-sr-therapist.mean": "your own alliance rating",
    "client.bondline-telehealth.mean": "a client rating of how much the technology got in the way",
}
STEP_MINUTES = 10
# A bond this close to the usual level is "about the usual" (a quarter point: one answer on one item of four).
NEAR = 0.25


@dataclass
class Sentence:
    clauses: list[str] = field(default_factory=list)
    # The numbers the sentence states, for the page's data attributes (tests read them).
    figures: dict[str, float] = field(default_factory=dict)

    def add(self, clause: str) -> None:
        self.clauses.append(clause)

    @property
    def text(self) -> str:
        if not self.clauses:
            return ""
        body = "; ".join(self.clauses)
        return body[0].upper() + body[1:] + "."


def pts(x: float) -> str:
    return f"{abs(x):.2f}"


def caseload_sentence(model: ModelResult, outcome: str) -> Sentence:
    """One plain sentence from the within-client term of the caseload model."""
    what = PLAIN_OUTCOMES.get(outcome, "the rating")
    s = Sentence()
    if not model.ok:
        s.add(f"there is not enough data yet to say whether disrupted sessions go with {what} that is lower or "
              f"higher than usual ({model.message[0].lower() + model.message[1:].rstrip('.')})")
        return s
    w = model.coef("within")
    est, lo, hi = (STEP_MINUTES * v for v in (w.estimate, w.ci_low, w.ci_high))
    s.figures = {"step_minutes": STEP_MINUTES, "estimate": est, "low": lo, "high": hi}
    head = (f"in your caseload, sessions with {STEP_MINUTES} more disrupted minutes than a client's usual went with "
            f"{what}")
    if lo > 0 or hi < 0:
        way = "lower" if est < 0 else "higher"
        near, far = sorted((abs(lo), abs(hi)))
        s.add(f"{head} about {pts(est)} points {way} (95% interval: between {near:.2f} and {far:.2f} {way})")
        s.add("an association, not proof of cause")
    else:
        way = "lower" if est < 0 else "higher"
        s.add(f"{head} about {pts(est)} points {way}, but the 95% interval runs from {pts(lo)} lower to "
              f"{pts(hi)} higher, so your caseload cannot yet tell which way it goes")
        s.add("an association at most, not proof of cause")
    return s


def session_sentence(summary: SessionSummary, row: CourseRow | None, threshold: float | None) -> Sentence:
    """The session report's first sentence: the client's bond beside their usual
    level and the rupture flag, then the connection."""
    s = Sentence()
    if row is None or row.bond is None:
        s.add("no client bond rating for this session yet")
    elif row.running_level is None:
        s.add(f"bond {row.bond:.2f}, the client's first bond rating, so there is no usual level to compare with yet")
    else:
        diff = row.bond - row.running_level
        if row.rupture and threshold is not None and row.drop is not None:
            drop, thr = distinct(row.drop, threshold)
            s.add(f"bond {row.bond:.2f}, well below the client's usual {row.running_level:.2f}: it fell {drop}, "
                  f"more than the {thr} that counts as a reliable change (rupture flag)")
        elif abs(diff) < NEAR:
            s.add(f"bond {row.bond:.2f}, about the client's usual {row.running_level:.2f}")
        else:
            way = "below" if diff < 0 else "above"
            s.add(f"bond {row.bond:.2f}, {way} the client's usual {row.running_level:.2f}"
                  + (" but not by a reliable change" if diff < 0 and threshold is not None else ""))
    if summary.minutes == 0 or summary.disrupted_pct is None:
        s.add("no connection data was received, so there is nothing to say about the connection")
    elif summary.disrupted_minutes == 0:
        s.add(f"the connection had no disrupted minutes in {summary.minutes}")
    else:
        n = summary.disrupted_minutes
        s.add(f"this session had {n} disrupted minute{'s' if n != 1 else ''} of {summary.minutes}")
        sides = sides_clause(summary.side_minutes, n)
        if sides:
            s.add(sides)
    return s


# Whose connection, in words (docs/reports.md, "Whose connection"). The reader is the clinician.
DIRECTION_WORDS = {"up": "sending", "down": "receiving", "both": "both ways", "round_trip": "round trip"}
KIND_WORDS = {"video_freeze": "a video freeze", "audio_dropout": "an audio dropout",
              "loss_burst": "a packet-loss burst", "latency_spike": "a latency spike", "reconnect": "a reconnect",
              "interruption": "a media interruption"}


def whose(role: str) -> str:
    return "your" if role == "clinician" else f"the {role}'s"


def leg_words(legs: list[Leg]) -> str:
    """"the client's connection (sending)", "your connection (receiving)", joined with "and"."""
    parts = [f"{whose(leg.role)} connection ({DIRECTION_WORDS.get(leg.direction, leg.direction)})" for leg in legs]
    return " and ".join(parts)


def attribution_words(a: Attribution) -> str:
    if a.legs:
        return leg_words(list(a.legs))
    if a.verdict == "between":
        if a.sender and a.receiver:
            return (f"the connection between the two ({whose(a.sender)} sending or {whose(a.receiver)} receiving; "
                    "peer to peer these cannot be told apart)")
        return "the connection between the two (peer to peer, the two ends cannot be told apart)"
    return "a part of the connection that the figures cannot name"


def clock(ms: int, t0_ms: int) -> str:
    s = max(ms - t0_ms, 0) // 1000
    return f"{s // 60}:{s % 60:02d}"


def incident_sentence(inc: Incident, t0_ms: int, loss_fraction: float) -> Sentence:
    """One disruption, however many sides saw it: whose connection, how much was lost, when."""
    s = Sentence()
    media = [(d, a) for d, a in inc.events if a.loss is not None]
    worst = max(media, key=lambda x: x[1].loss or 0.0) if media else None
    legs = inc.legs
    if legs:
        who = leg_words(legs)
    else:
        lead = next((a for _, a in inc.events if a.verdict == "between"), inc.events[0][1])
        who = attribution_words(lead)
    span = f"from {clock(inc.start_ms, t0_ms)} to {clock(inc.end_ms, t0_ms)}"
    if worst is not None and worst[1].loss is not None and worst[1].loss >= loss_fraction:
        pct = worst[1].loss * 100
        s.add(f"{who} lost {pct:.0f}% of packets {span}" if pct >= 1 else f"{who} lost {pct:.1f}% of packets {span}")
        s.figures["loss_pct"] = round(pct, 1)
    else:
        s.add(f"{who}: trouble {span}")
    seen: list[str] = []
    for d, _ in inc.events:
        role = "you" if d.role == "clinician" else f"the {d.role}" if d.role else "the call"
        item = f"{KIND_WORDS[d.kind]} ({role})"
        if item not in seen:
            seen.append(item)
    s.add("seen as " + ", ".join(seen))
    s.figures.update({"start_ms": inc.start_ms, "end_ms": inc.end_ms})
    return s


def sides_clause(side_minutes: dict[str, int] | None, disrupted: int) -> str | None:
    """"of those, 3 on the client's connection, 1 on yours and 2 between the two"."""
    if not side_minutes or not disrupted:
        return None
    parts = []
    if side_minutes.get("client"):
        parts.append(f"{side_minutes['client']} on the client's connection")
    if side_minutes.get("clinician"):
        parts.append(f"{side_minutes['clinician']} on yours")
    if side_minutes.get("between"):
        parts.append(f"{side_minutes['between']} between the two (not separable peer to peer)")
    if side_minutes.get("undetermined"):
        parts.append(f"{side_minutes['undetermined']} undetermined")
    if not parts:
        return None
    body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"of those, {body}"
