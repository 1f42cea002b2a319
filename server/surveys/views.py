"""What the survey templates show: view models and the page texts.

Kept apart from the routes so the wording of every page a client can see
sits in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.responses import Response

from server.surveys.forms import ParsedForm, field_name, item_anchor, section_anchor
from server.surveys.instruments import Instrument, Respondent
from server.web.pages import render

BLANK = "___"
# Survey pages carry a secret in their URL: keep it out of Referer headers,
# caches and search engines.
PRIVATE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
}

ABOUT: dict[Respondent, list[str]] = {
    "client": [
        "These questions ask how the session went for you, including whether the video connection got in "
        "the way. Your answers help your therapist notice what is working and what to talk about.",
        "Your therapist sees your answers. They are stored under a code for you, never your name, next to "
        "measurements of the connection (never the call's sound or picture).",
        "It takes about three minutes. There are no right or wrong answers, and you may leave a question out.",
    ],
    "therapist": [
        "Your own rating of this session, stored with it beside the client's rating and the connection "
        "measurements. Only you see it in your reports.",
    ],
}


@dataclass(frozen=True)
class Notice:
    status: int
    heading: str
    lines: tuple[str, ...]


UNKNOWN = Notice(
    404,
    "This link does not work",
    ("Please check that the whole link was copied. If it still does not work, ask your therapist for a new one.",),
)
USED = Notice(409, "Already answered", ("This form has already been answered. Thank you.",))
EXPIRED = Notice(
    410,
    "This link has expired",
    ("Feedback links work for a limited time after the session. If you would still like to give feedback, "
     "please ask your therapist.",),
)
GONE = Notice(410, "This form is no longer available", ("Please ask your therapist for a new link.",))
UNREADABLE = Notice(
    400, "The form could not be read", ("Nothing was saved. Please open the link again and send the form once more.",)
)
TOO_LARGE = Notice(413, "The form was too large", ("Nothing was saved. Please open the link again and retry.",))
WRONG_TYPE = Notice(415, "The form could not be read", ("Nothing was saved. Please send the form from its page.",))
THANKS = Notice(
    200,
    "Thank you",
    ("Your answers have been saved. You can close this page.",),
)


def render_notice(request: Request, notice: Notice, **extra: Any) -> Response:
    return render(
        request,
        "notice.html",
        {"heading": notice.heading, "lines": notice.lines, **extra},
        status_code=notice.status,
        headers=PRIVATE_HEADERS,
    )


def _parts(inst: Instrument, text: str) -> list[dict[str, Any]]:
    if inst.blank_reads_as is None or BLANK not in text:
        return [{"blank": False, "text": text}]
    out: list[dict[str, Any]] = []
    pieces = text.split(BLANK)
    for n, piece in enumerate(pieces):
        if piece:
            out.append({"blank": False, "text": piece})
        if n < len(pieces) - 1:
            out.append({"blank": True, "text": inst.blank_reads_as})
    return out


def sections(instruments: Sequence[Instrument], form: ParsedForm) -> list[dict[str, Any]]:
    out = []
    for inst in instruments:
        questions = []
        for n, item in enumerate(inst.items, start=1):
            name = field_name(inst.id, item.id)
            anchor = item_anchor(inst.id, item.id)
            chosen = form.answers[inst.id][item.id]
            questions.append(
                {
                    "n": n,
                    "name": name,
                    "anchor": anchor,
                    "parts": _parts(inst, item.text),
                    "problem": form.problem_for(anchor),
                    "choices": [
                        {"id": f"{anchor}-{c.value}", "value": c.value, "label": c.label, "checked": chosen == c.value}
                        for c in inst.scale_of(item)
                    ],
                }
            )
        out.append(
            {
                "anchor": section_anchor(inst.id),
                "title": inst.title,
                "instructions": inst.instructions,
                "problem": form.problem_for(section_anchor(inst.id)),
                "questions": questions,
            }
        )
    return out


def render_form(
    request: Request,
    *,
    respondent: Respondent,
    instruments: Sequence[Instrument],
    form: ParsedForm,
    action: str,
    csrf: Any = "",
    back_url: str | None = None,
    status_code: int = 200,
    heading: str | None = None,
    correcting: bool = False,
) -> Response:
    if heading is None:
        heading = "How did your session go?" if respondent == "client" else "Your rating of this session"
    settings = request.app.state.settings
    parts = sections(instruments, form)
    total = sum(len(part["questions"]) for part in parts)
    return render(
        request,
        "form.html",
        {
            "heading": heading,
            "about": ABOUT[respondent],
            "sections": parts,
            "problems": form.problems,
            "accept_blanks": form.accept_blanks,
            "action": action,
            "csrf": csrf,
            "back_url": back_url,
            "back_label": "Back to the session",
            "correcting": correcting,
            "clinic_name": settings.clinic_name,
            "total_questions": total,
            "respondent": respondent,
        },
        status_code=status_code,
        headers=PRIVATE_HEADERS,
    )
