"""Scoring an instrument's answers: totals, means, subscales, blanks.

Definitions (docs/instruments.md, "Scoring"):
- item score: the answer, or ``min + max - answer`` for a reverse-scored item
  (min and max of that item's scale);
- mean: mean of the answered item scores, given when at most
  ``scoring.max_missing`` items are blank;
- total: the sum of item scores when nothing is blank; with blanks (within
  the limit) and ``missing_sum: prorate`` it is mean x number of items, with
  ``missing_sum: none`` there is no total;
- subscales: the same rules over the subscale's items with
  ``scoring.subscale_max_missing``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from server.surveys.instruments import Instrument, Item

Answers = Mapping[str, int | None]


@dataclass(frozen=True)
class Part:
    sum: float | None
    mean: float | None
    answered: int
    items: int


@dataclass(frozen=True)
class Score:
    total: float | None
    mean: float | None
    answered: int
    missing: int
    subscales: dict[str, Part] = field(default_factory=dict)

    def subscales_json(self) -> dict[str, dict[str, float | None]]:
        return {k: {"sum": v.sum, "mean": v.mean} for k, v in self.subscales.items()}


def item_score(instrument: Instrument, item: Item, answer: int) -> int:
    values = [c.value for c in instrument.scale_of(item)]
    if answer not in values:
        raise ValueError(f"item {item.id}: {answer} is not a value of its scale {values}")
    return min(values) + max(values) - answer if item.reverse else answer


def _part(scores: Sequence[int | None], max_missing: int, missing_sum: str) -> Part:
    answered = [s for s in scores if s is not None]
    blanks = len(scores) - len(answered)
    if not answered or blanks > max_missing:
        return Part(None, None, len(answered), len(scores))
    mean = sum(answered) / len(answered)
    if blanks == 0:
        total: float | None = float(sum(answered))
    elif missing_sum == "prorate":
        total = mean * len(scores)
    else:
        total = None
    return Part(total, mean, len(answered), len(scores))


def score(instrument: Instrument, answers: Answers) -> Score:
    """Score one instrument. ``answers`` maps item id to the chosen value or
    None; items absent from it count as blank. Unknown ids are an error."""
    unknown = set(answers) - {i.id for i in instrument.items}
    if unknown:
        raise ValueError(f"unknown items for {instrument.id}: {sorted(unknown)}")
    by_item: dict[str, int | None] = {}
    for item in instrument.items:
        a = answers.get(item.id)
        by_item[item.id] = None if a is None else item_score(instrument, item, a)
    rule = instrument.scoring
    whole = _part(list(by_item.values()), rule.max_missing, rule.missing_sum)
    subs = {
        s.id: _part([by_item[i] for i in s.items], rule.subscale_max_missing, rule.missing_sum)
        for s in instrument.subscales
    }
    return Score(
        total=whole.sum,
        mean=whole.mean,
        answered=whole.answered,
        missing=whole.items - whole.answered,
        subscales=subs,
    )


def min_answered(instrument: Instrument) -> int:
    """Fewest answered items for which the instrument still gives a score."""
    return len(instrument.items) - instrument.scoring.max_missing
