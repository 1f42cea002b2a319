"""Reading a submitted survey form: server-side validation, answers kept.

A form field is ``<instrument id>:<item id>`` with the chosen scale value.
Tampering (unknown or repeated fields) makes the whole form unreadable
(400); a respondent's slips (a blank, an impossible value) come back as
named problems with every valid answer kept (422).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from server.surveys.instruments import Instrument
from server.surveys.scoring import min_answered

ACCEPT_BLANKS = "accept_blanks"
CSRF = "csrf_token"
MAX_FIELDS = 1000


class UnreadableForm(Exception):
    """The body is not a form this page could have sent."""


@dataclass(frozen=True)
class Problem:
    anchor: str  # id of the fieldset or section the message belongs to
    message: str
    blank: bool = False  # an unanswered item (the page then explains the opt-out)


@dataclass
class ParsedForm:
    answers: dict[str, dict[str, int | None]]
    accept_blanks: bool
    problems: list[Problem] = field(default_factory=list)

    def problem_for(self, anchor: str) -> str | None:
        for p in self.problems:
            if p.anchor == anchor:
                return p.message
        return None


def field_name(instrument_id: str, item_id: str) -> str:
    # ':' cannot occur in either id (see instruments.Ident / ItemId).
    return f"{instrument_id}:{item_id}"


def item_anchor(instrument_id: str, item_id: str) -> str:
    return f"q-{instrument_id}-{item_id}"


def section_anchor(instrument_id: str) -> str:
    return f"part-{instrument_id}"


def decode_pairs(body: bytes) -> list[tuple[str, str]]:
    try:
        text = body.decode("utf-8")
        return parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise UnreadableForm("the form data could not be decoded") from None


def empty_form(instruments: Sequence[Instrument]) -> ParsedForm:
    return ParsedForm({i.id: {it.id: None for it in i.items} for i in instruments}, accept_blanks=False)


def parse(instruments: Sequence[Instrument], pairs: list[tuple[str, str]]) -> ParsedForm:
    known = {field_name(i.id, it.id): (i, it) for i in instruments for it in i.items}
    form = empty_form(instruments)
    seen: set[str] = set()
    for name, value in pairs:
        if name in seen:
            raise UnreadableForm(f"field {name[:80]!r} was sent twice")
        seen.add(name)
        if name == ACCEPT_BLANKS:
            form.accept_blanks = value == "yes"
            continue
        if name == CSRF:
            continue
        if name not in known:
            raise UnreadableForm(f"unexpected field {name[:80]!r}")
        inst, item = known[name]
        if value == "":
            continue
        allowed = {c.value: c for c in inst.scale_of(item)}
        try:
            number = int(value) if len(value) <= 6 else None
        except ValueError:
            number = None
        if number is None or number not in allowed:
            form.problems.append(
                Problem(
                    item_anchor(inst.id, item.id),
                    f"{inst.short_title}, question {_number(inst, item.id)}: choose one of the answers shown.",
                )
            )
            continue
        form.answers[inst.id][item.id] = number
    _check_blanks(instruments, form)
    order = {a: n for n, a in enumerate(_anchors(instruments))}
    form.problems.sort(key=lambda p: order.get(p.anchor, len(order)))
    return form


def _anchors(instruments: Sequence[Instrument]) -> list[str]:
    out: list[str] = []
    for inst in instruments:
        out.append(section_anchor(inst.id))
        out.extend(item_anchor(inst.id, it.id) for it in inst.items)
    return out


def _number(inst: Instrument, item_id: str) -> int:
    return [it.id for it in inst.items].index(item_id) + 1


def _check_blanks(instruments: Sequence[Instrument], form: ParsedForm) -> None:
    flagged = {p.anchor for p in form.problems}
    for inst in instruments:
        blanks = [it.id for it in inst.items if form.answers[inst.id][it.id] is None]
        if not blanks:
            continue
        answered = len(inst.items) - len(blanks)
        if form.accept_blanks:
            need = min_answered(inst)
            if answered < need:
                form.problems.append(
                    Problem(
                        section_anchor(inst.id),
                        f"{inst.short_title}: please answer at least {need} of the {len(inst.items)} questions "
                        f"so this part can be scored ({answered} answered).",
                    )
                )
            continue
        for item_id in blanks:
            anchor = item_anchor(inst.id, item_id)
            if anchor not in flagged:
                form.problems.append(
                    Problem(
                        anchor,
                        f"{inst.short_title}, question {_number(inst, item_id)}: no answer chosen.",
                        blank=True,
                    )
                )
