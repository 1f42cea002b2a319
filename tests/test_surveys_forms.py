"""Server-side validation of submitted survey forms."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from server.surveys.forms import UnreadableForm, decode_pairs, parse
from server.surveys.instruments import Instrument, load_registry

DEFAULTS = {"client": ["wai-sr-client", "bondline-telehealth"], "therapist": ["wai-sr-therapist"]}


@pytest.fixture(scope="module")
def instruments() -> list[Instrument]:
    reg = load_registry(None, DEFAULTS)  # type: ignore[arg-type]
    return [reg.get("wai-sr-client"), reg.get("bondline-telehealth")]


def full(**over: str) -> dict[str, str]:
    data = {f"wai-sr-client:{n}": "4" for n in range(1, 13)}
    data.update({f"bondline-telehealth:{i}": "2" for i in
                 ("tech_interfered", "felt_heard_seen", "session_changed", "hard_to_talk")})
    data.update(over)
    return data


def run(instruments: list[Instrument], data: dict[str, str]):  # type: ignore[no-untyped-def]
    return parse(instruments, decode_pairs(urlencode(data).encode()))


def test_complete_form(instruments: list[Instrument]) -> None:
    form = run(instruments, full())
    assert form.problems == []
    assert form.answers["wai-sr-client"]["12"] == 4
    assert form.answers["bondline-telehealth"]["felt_heard_seen"] == 2


def test_blanks_are_named_and_other_answers_kept(instruments: list[Instrument]) -> None:
    data = full()
    del data["wai-sr-client:3"]
    data["bondline-telehealth:hard_to_talk"] = ""
    form = run(instruments, data)
    assert [p.anchor for p in form.problems] == ["q-wai-sr-client-3", "q-bondline-telehealth-hard_to_talk"]
    assert "question 3" in form.problems[0].message and form.problems[0].blank
    assert form.answers["wai-sr-client"]["4"] == 4 and form.answers["wai-sr-client"]["3"] is None


def test_out_of_range_and_non_numbers_are_named(instruments: list[Instrument]) -> None:
    form = run(instruments, full(**{"wai-sr-client:2": "6", "wai-sr-client:5": "0", "wai-sr-client:7": "abc",
                                   "wai-sr-client:9": "9" * 50, "wai-sr-client:11": "3.0"}))
    assert [p.anchor for p in form.problems] == [f"q-wai-sr-client-{n}" for n in (2, 5, 7, 9, 11)]
    assert all("choose one of the answers" in p.message for p in form.problems)
    assert form.answers["wai-sr-client"]["2"] is None


def test_accepting_blanks_within_the_scoring_limit(instruments: list[Instrument]) -> None:
    data = full(accept_blanks="yes")
    del data["wai-sr-client:1"]
    del data["wai-sr-client:2"]
    form = run(instruments, data)
    assert form.problems == [] and form.accept_blanks


def test_accepting_blanks_still_needs_enough_answers_to_score(instruments: list[Instrument]) -> None:
    data = full(accept_blanks="yes")
    for n in (1, 2, 3):
        del data[f"wai-sr-client:{n}"]
    form = run(instruments, data)
    assert [p.anchor for p in form.problems] == ["part-wai-sr-client"]
    assert "at least 10 of the 12" in form.problems[0].message


@pytest.mark.parametrize(
    "body",
    [
        b"wai-sr-client:1=4&wai-sr-client:1=5",  # a field twice
        b"session_id=7",  # not a field of this form
        b"wai-sr-therapist:1=4",  # another instrument's field
        b"\xff\xfe=1",  # not UTF-8
        b"a=1&&=&&b",  # malformed
    ],
)
def test_tampered_forms_are_unreadable(instruments: list[Instrument], body: bytes) -> None:
    with pytest.raises(UnreadableForm):
        parse(instruments, decode_pairs(body))
