"""``POST /v1/sfu/janus/events``: Janus's event handler posts, a second source for sessions.

Janus's sample HTTP event handler (janus.eventhandler.sampleevh) posts with
HTTP basic auth (``backend_user`` / ``backend_pwd``); the password must be
BONDLINE_SFU_EVENTS_KEY. A post that is not Janus events is refused whole
(400: not JSON; 422: wrong shape), so nothing of it is stored; events of
handles that are not a Bondline participant's are ignored and counted.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging

import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from server.sfu import janus, store
from server.timeutil import now_ms
from server.web.features import Feature

log = logging.getLogger("bondline.sfu")
router = APIRouter(tags=["sfu"])


def _secret(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return ""
    return ""


@router.post("/v1/sfu/janus/events")
async def janus_events(request: Request) -> JSONResponse:
    key: str | None = request.app.state.settings.sfu_events_key
    if not key:
        raise HTTPException(404, "SFU statistics are not enabled on this server (BONDLINE_SFU_EVENTS_KEY)")
    if not hmac.compare_digest(_secret(request).encode(), key.encode()):
        raise HTTPException(401, "wrong or missing SFU events key", headers={"WWW-Authenticate": 'Basic realm="sfu"'})
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise HTTPException(400, "the body is not JSON") from None
    try:
        parsed = janus.parse(body)
    except janus.BadEvents as exc:
        raise HTTPException(422, f"not Janus events: {exc}") from None
    engine = request.app.state.engine

    def write() -> store.Written:
        with engine.begin() as conn:
            return store.write(conn, parsed.stats, now_ms())

    written = await run_in_threadpool(write)
    return JSONResponse({"stored": written.stored, "duplicates": written.duplicates,
                         "unmatched": parsed.unmatched + written.unmatched, "ignored": parsed.ignored})


FEATURE = Feature("sfu", routers=[router])
