"""Survey pages: the public form behind a survey link, and the clinician's
own rating form reached from the session page.

Both are plain server-rendered HTML forms (no JavaScript needed), validated
on the server. A failed check changes nothing; a good submit claims the
link and stores the ratings in one transaction, then redirects (303) so a
reload cannot post again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse
from sqlalchemy.exc import IntegrityError
from starlette.responses import Response

from server.accounts.deps import csrf_field, page_identity, verify_csrf
from server.accounts.identity import Identity
from server.audit.log import record
from server.sessions import service as sessions
from server.surveys import links, views
from server.surveys.forms import ParsedForm, UnreadableForm, decode_pairs, empty_form, parse
from server.surveys.instruments import Instrument, InstrumentError
from server.surveys.ratings import (
    AlreadyAnswered,
    correct_submission,
    ratings_for_sessions,
    store_submission,
    stored_answers,
)
from server.surveys.registry import registry_of
from server.timeutil import now_ms

FORM_LIMIT = 65_536  # bytes; a full form is well under 2 KiB
SESSION_PAGE = "/reports/sessions/{session_id}"  # the reports area's session page

router = APIRouter(include_in_schema=False)
Clinician = Annotated[Identity, Depends(page_identity)]


class Refusal(Exception):
    def __init__(self, notice: views.Notice) -> None:
        super().__init__(notice.heading)
        self.notice = notice


async def read_form(request: Request) -> bytes:
    """The urlencoded body, refused past FORM_LIMIT without reading it all."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise Refusal(views.WRONG_TYPE)
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > FORM_LIMIT):
        raise Refusal(views.TOO_LARGE if declared.isdigit() else views.UNREADABLE)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > FORM_LIMIT:
            raise Refusal(views.TOO_LARGE)
        chunks.append(chunk)
    body = b"".join(chunks)
    # Later readers of this request (the CSRF check's request.form()) need it.
    request._body = body
    return body


def _instruments(request: Request, link: links.LinkRow) -> list[Instrument]:
    registry = registry_of(request.app)
    try:
        return [registry.get(i) for i in link.instruments]
    except InstrumentError:
        raise Refusal(views.GONE) from None


def _open_link(request: Request, token: str) -> tuple[links.LinkRow, list[Instrument]]:
    with request.app.state.engine.connect() as conn:
        link = links.find_by_token(conn, request.app.state.settings, token)
    if link is None:
        raise Refusal(views.UNKNOWN)
    state = links.status(link, now_ms())
    if state is links.LinkStatus.USED:
        raise Refusal(views.USED)
    if state is links.LinkStatus.EXPIRED:
        raise Refusal(views.EXPIRED)
    return link, _instruments(request, link)


def _store(request: Request, link: links.LinkRow, form: ParsedForm) -> None:
    try:
        with request.app.state.engine.begin() as conn:
            store_submission(conn, registry_of(request.app), link, form.answers, now_ms())
    except IntegrityError:
        raise Refusal(views.USED) from None
    except AlreadyAnswered:
        raise Refusal(views.USED) from None


async def _guarded(request: Request, work: Callable[[], Response]) -> Response:
    try:
        return await run_in_threadpool(work)
    except Refusal as r:
        return views.render_notice(request, r.notice)


# --- the client's (or anyone's) survey link -------------------------------

@router.get("/survey/thanks")
def thanks(request: Request) -> Response:
    return views.render_notice(request, views.THANKS)


@router.get("/survey/{token}")
async def survey_form(token: str, request: Request) -> Response:
    def work() -> Response:
        link, instruments = _open_link(request, token)
        return views.render_form(
            request, respondent=link.respondent, instruments=instruments, form=empty_form(instruments),
            action=request.url.path,
        )

    return await _guarded(request, work)


@router.post("/survey/{token}")
async def survey_submit(token: str, request: Request) -> Response:
    try:
        body = await read_form(request)
    except Refusal as r:
        return views.render_notice(request, r.notice)

    def work() -> Response:
        link, instruments = _open_link(request, token)
        try:
            form = parse(instruments, decode_pairs(body))
        except UnreadableForm:
            raise Refusal(views.UNREADABLE) from None
        if form.problems:
            return views.render_form(
                request, respondent=link.respondent, instruments=instruments, form=form,
                action=request.url.path, status_code=422,
            )
        _store(request, link, form)
        return RedirectResponse("/survey/thanks", status_code=303, headers=views.PRIVATE_HEADERS)

    return await _guarded(request, work)


# --- the clinician's own rating, from the session page ---------------------

def _therapist_link(request: Request, identity: Identity, session_id: int) -> links.LinkRow:
    """The session's therapist link; made (with the default instruments) for
    a session created without one. Other clinicians' sessions are 404."""
    settings = request.app.state.settings
    engine = request.app.state.engine
    with engine.connect() as conn:
        try:
            sessions.get_session_row(conn, session_id, clinician_id=identity.clinician_id)
        except sessions.NotFound:
            raise Refusal(views.Notice(404, "No such session", ("This session is not in your caseload.",))) from None
        link = links.find_for_session(conn, settings, session_id, "therapist")
    if link is not None:
        return link
    ids = registry_of(request.app).defaults.get("therapist", [])
    if not ids:
        raise Refusal(views.GONE)
    try:
        with engine.begin() as conn:
            links.create_links(conn, session_id, {"therapist": ids}, now_ms())
    except IntegrityError:
        pass  # a concurrent request made it first; read theirs
    with engine.connect() as conn:
        link = links.find_for_session(conn, settings, session_id, "therapist")
    if link is None:
        raise Refusal(views.GONE)
    return link


def _about_session(request: Request, identity: Identity, session_id: int) -> str:
    """"Session 4 with client DEMO-003, Tue 17 Nov": which session a rating is for."""
    with request.app.state.engine.connect() as conn:
        row = sessions.get_session_row(conn, session_id, clinician_id=identity.clinician_id)
    return f"session {row.number} with client {row.client_code}"


def _saved_page(request: Request, identity: Identity, link: links.LinkRow) -> Response:
    with request.app.state.engine.connect() as conn:
        rows = ratings_for_sessions(conn, [link.session_id])[link.session_id]
    registry = registry_of(request.app)
    what = _about_session(request, identity, link.session_id)
    lines = [f"Your rating of {what} is saved."]
    for r in rows:
        if r.respondent != "therapist":
            continue
        title = registry.get(r.instrument_id).short_title if r.instrument_id in registry else r.instrument_id
        mean = "n/a" if r.mean is None else f"{r.mean:.2f}"
        total = "n/a" if r.total is None else f"{r.total:g}"
        lines.append(f"{title}: mean {mean}, total {total}.")
    return views.render_notice(
        request, views.Notice(200, "Rating saved", tuple(lines)),
        back_url=SESSION_PAGE.format(session_id=link.session_id), back_label="Back to the session",
        extra_url=f"/sessions/{link.session_id}/rating?correct=1", extra_label="Correct this rating",
    )


def _clinician_state(request: Request, identity: Identity, session_id: int) -> tuple[links.LinkRow, Any]:
    link = _therapist_link(request, identity, session_id)
    return link, links.status(link, now_ms())


def _clinician_form(request: Request, identity: Identity, session_id: int, instruments: list[Instrument],
                    form: ParsedForm, correcting: bool, status_code: int = 200) -> Response:
    what = _about_session(request, identity, session_id)
    return views.render_form(
        request, respondent="therapist", instruments=instruments, form=form, action=request.url.path,
        csrf=csrf_field(request), back_url=SESSION_PAGE.format(session_id=session_id), status_code=status_code,
        heading=f"Your rating of {what}", correcting=correcting,
    )


@router.get("/sessions/{session_id}/rating")
async def clinician_form(session_id: int, request: Request, identity: Clinician, correct: bool = False) -> Response:
    def work() -> Response:
        link, state = _clinician_state(request, identity, session_id)
        instruments = _instruments(request, link)
        if state is links.LinkStatus.USED:
            if not correct:
                return _saved_page(request, identity, link)
            with request.app.state.engine.connect() as conn:
                stored = stored_answers(conn, link)
            form = empty_form(instruments)
            for inst_id, answers in stored.items():
                form.answers[inst_id].update({k: v for k, v in answers.items() if k in form.answers[inst_id]})
            form.accept_blanks = any(v is None for a in form.answers.values() for v in a.values())
            return _clinician_form(request, identity, session_id, instruments, form, correcting=True)
        if state is links.LinkStatus.EXPIRED:
            raise Refusal(views.EXPIRED)
        return _clinician_form(request, identity, session_id, instruments, empty_form(instruments), correcting=False)

    return await _guarded(request, work)


@router.post("/sessions/{session_id}/rating")
async def clinician_submit(session_id: int, request: Request, identity: Clinician) -> Response:
    try:
        body = await read_form(request)
    except Refusal as r:
        return views.render_notice(request, r.notice)
    await verify_csrf(request)

    def work() -> Response:
        link, state = _clinician_state(request, identity, session_id)
        correcting = state is links.LinkStatus.USED
        if state is links.LinkStatus.EXPIRED:
            raise Refusal(views.EXPIRED)
        instruments = _instruments(request, link)
        try:
            form = parse(instruments, decode_pairs(body))
        except UnreadableForm:
            raise Refusal(views.UNREADABLE) from None
        if form.problems:
            return _clinician_form(request, identity, session_id, instruments, form, correcting, status_code=422)
        if correcting:
            with request.app.state.engine.begin() as conn:
                correct_submission(conn, registry_of(request.app), link, form.answers, now_ms())
                record(conn, request, "rating corrected", session_id=session_id,
                       detail="the clinician's own rating of the session")
        else:
            _store(request, link, form)
        return RedirectResponse(request.url.path, status_code=303)

    return await _guarded(request, work)
