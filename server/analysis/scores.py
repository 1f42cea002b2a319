"""Ratings as named scores per session, for tables, charts and models.

Ratings are read through the surveys interface
(``server.surveys.ratings.ratings_for_sessions``). Each score has a key
``<respondent>.<instrument>.<part>`` where part is ``mean``, a subscale id,
or ``item.<item id>`` (items are kept for the telehealth-experience set,
whose items are read one by one, not as a scale).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from server.surveys.ratings import ratings_for_sessions

BOND = "client.wai-sr-client.bond"
# Outcomes a clinician may choose for the caseload model, in menu order.
OUTCOMES: dict[str, str] = {
    BOND: "Client bond (WAI-SR, 1-5)",
    "client.wai-sr-client.mean": "Client alliance total (WAI-SR mean, 1-5)",
    "client.wai-sr-client.goal": "Client goal (WAI-SR, 1-5)",
    "client.wai-sr-client.task": "Client task (WAI-SR, 1-5)",
    "therapist.wai-sr-therapist.bond": "Therapist-rated bond (WAI-SR-T, 1-5)",
    "therapist.wai-sr-therapist.mean": "Therapist-rated alliance (WAI-SR-T mean, 1-5)",
    "client.bondline-telehealth.mean": "Client-perceived disruption (telehealth set, 1-5)",
}
ITEM_INSTRUMENTS = frozenset({"bondline-telehealth"})
TELEHEALTH_ITEMS = {
    "tech_interfered": "Tech got in the way",
    "felt_heard_seen": "Felt heard and seen",
    "session_changed": "Session had to change",
    "hard_to_talk": "Harder to talk",
}


@dataclass
class SessionScores:
    values: dict[str, float] = field(default_factory=dict)
    # The ratings as submitted, for display: one dict per (respondent, instrument).
    ratings: list[dict[str, Any]] = field(default_factory=list)


INSTRUMENT_NAMES = {
    "wai-sr-client": "WAI-SR",
    "wai-sr-therapist": "WAI-SR-T",
    "bondline-telehealth": "telehealth set",
}


def instrument_name(instrument_id: str) -> str:
    return INSTRUMENT_NAMES.get(instrument_id, instrument_id)


def label(key: str) -> str:
    """Plain label of a score key, e.g. 'Therapist: WAI-SR-T goal'."""
    if key in OUTCOMES:
        return OUTCOMES[key]
    parts = key.split(".")
    if len(parts) < 3:
        return key
    who = parts[0].capitalize()
    if len(parts) >= 4 and parts[2] == "item":
        item = ".".join(parts[3:])
        return f"{who}: {TELEHEALTH_ITEMS.get(item, item)}"
    return f"{who}: {instrument_name(parts[1])} {parts[2]}"


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def from_records(records: list[Any]) -> SessionScores:
    """Scores from the surveys engineer's RatingRecord objects (duck-typed)."""
    out = SessionScores()
    for r in records:
        base = f"{r.respondent}.{r.instrument_id}"
        mean = _num(r.mean)
        if mean is not None:
            out.values[f"{base}.mean"] = mean
        subs = r.subscales or {}
        for sub_id, part in subs.items():
            m = _num(part.get("mean")) if isinstance(part, dict) else None
            if m is not None:
                out.values[f"{base}.{sub_id}"] = m
        if r.instrument_id in ITEM_INSTRUMENTS:
            for item_id, answer in (r.answers or {}).items():
                a = _num(answer)
                if a is not None:
                    out.values[f"{base}.item.{item_id}"] = a
        out.ratings.append(
            {
                "respondent": r.respondent,
                "instrument_id": r.instrument_id,
                "instrument_version": r.instrument_version,
                "total": _num(r.total),
                "mean": mean,
                "subscales": {k: v for k, v in subs.items() if isinstance(v, dict)},
                "answers": dict(r.answers or {}),
                "submitted_ms": r.submitted_ms,
            }
        )
    return out


def load_scores(conn: Connection, session_ids: list[int]) -> dict[int, SessionScores]:
    """Scores of each session that has ratings (sessions without are absent)."""
    if not session_ids:
        return {}
    return {sid: from_records(recs) for sid, recs in ratings_for_sessions(conn, session_ids).items() if recs}
