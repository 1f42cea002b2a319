"""Sidecar endpoints: the ``/v1/probe`` socket, the browser probe script, the
pre-session connection check page and the API that makes its links."""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from starlette.responses import Response

from server.accounts.deps import api_identity
from server.accounts.identity import Identity
from server.config import ProbeSettings
from server.ingest import protocol as p
from server.sessions import service
from server.sidecar.ice import ice_config
from server.sidecar.links import create_check_link
from server.timeutil import now_ms, to_iso
from server.web.assets import Asset
from server.web.features import Feature
from server.web.pages import render
from server.web.urls import base_url

if TYPE_CHECKING:
    from server.sidecar.run import SidecarRun

log = logging.getLogger("bondline.sidecar")
router = APIRouter(tags=["probe"])
PER_PARTICIPANT = 2  # a browser probe and an agent, or a reconnect overlapping its predecessor



def _limits(request: Request) -> ProbeSettings:
    limits: ProbeSettings = request.app.state.settings.probe
    return limits


async def _receive_json(ws: WebSocket, timeout: float, settings: Any) -> dict[str, Any] | None:
    try:
        message = await asyncio.wait_for(ws.receive(), timeout=timeout)
    except TimeoutError:
        raise p.refuse(p.AUTH_TIMEOUT, "no message in time") from None
    if message["type"] == "websocket.disconnect":
        return None
    return p.parse_json(message.get("text") or message.get("bytes") or b"", settings)


async def _send(ws: WebSocket, msg: dict[str, Any]) -> None:
    await ws.send_text(orjson.dumps(msg).decode())


async def _refuse(ws: WebSocket, r: p.Refusal, who: str) -> None:
    log.info("probe refused (%s): %s", who, r)
    try:
        await _send(ws, {"type": "error", "code": r.ws_code, "reason": r.reason})
        await ws.close(code=r.ws_code, reason=r.reason.encode()[:120].decode("utf-8", "ignore"))
    except (RuntimeError, WebSocketDisconnect):
        pass


# Probe sockets admitted by this process, from auth until they close, by
# slot: participant id. The limits count these, not the runs (a run exists
# only once its offer arrives).
ADMITTED: dict[int, int] = {}
_slots = itertools.count()


def _admit_probe(participant_id: int, limits: ProbeSettings) -> int:
    """Take a probe slot for a participant, or refuse (no await inside)."""
    if len(ADMITTED) >= limits.max_per_process:
        raise p.refuse(p.UNAVAILABLE, "this server is at its probe capacity; try again shortly")
    if sum(1 for pid in ADMITTED.values() if pid == participant_id) >= PER_PARTICIPANT:
        raise p.refuse(p.RATE_LIMITED, f"at most {PER_PARTICIPANT} probes at once per participant")
    slot = next(_slots)
    ADMITTED[slot] = participant_id
    return slot


def _load_probe_machinery() -> None:
    """Import the probe machinery (aiortc, PyAV, numpy: a few tenths of a
    second) when the first probe connects, so that a server that never hosts
    one starts without it. Run in a thread, off the event loop."""
    import media.pilot_opus  # noqa: F401
    import server.sidecar.run  # noqa: F401


@router.websocket("/v1/probe")
async def probe_ws(ws: WebSocket) -> None:
    await asyncio.to_thread(_load_probe_machinery)
    from media.pilot_opus import encode_cycle
    from server.sidecar.run import ACTIVE, SidecarRun, authenticate_async, negotiate_profile

    app = ws.app
    settings = app.state.settings
    limits = settings.probe
    await ws.accept()
    run: SidecarRun | None = None
    slot: int | None = None
    clean = False
    reason = "client left"
    try:
        hello = await _receive_json(ws, settings.auth_timeout_s, settings)
        if hello is None:
            return
        if hello.get("type") != "auth":
            raise p.refuse(p.UNAUTHORIZED, 'the first message must be {"type": "auth", "token": ...}')
        owner, mode = await authenticate_async(app, hello.get("token"))
        # Checked and taken with no await in between: concurrent sockets
        # cannot all pass the check before any of them is counted.
        slot = _admit_probe(owner.participant_id, limits)
        await _send(ws, {"type": "welcome", "mode": mode, "session": owner.session_id, "role": owner.role,
                         "iceServers": ice_config(limits), "checkDurationS": limits.check_duration_s,
                         "limits": {"maxFps": limits.max_fps, "maxPingHz": limits.max_ping_hz}})
        offer = await _receive_json(ws, settings.auth_timeout_s, settings)
        if offer is None:
            return
        sdp = offer.get("sdp")
        if offer.get("type") != "offer" or not isinstance(sdp, str) or "m=" not in sdp:
            raise p.refuse(p.MALFORMED, 'expected {"type": "offer", "sdp": ...}')
        profile = negotiate_profile(offer.get("profile"), mode, limits)
        # The pilot's Opus packets are encoded once per process; not on the event loop.
        await asyncio.to_thread(encode_cycle, profile.ptime_ms)
        run = SidecarRun(app, owner, mode, profile, limits)
        ACTIVE[run.run] = run
        try:
            answer = await run.endpoint.make_answer(sdp)
        except Exception as e:  # noqa: BLE001 - aiortc raises many kinds for an unusable offer
            raise p.refuse(p.INVALID, f"could not use the offer: {e}") from None
        await _send(ws, {"type": "answer", "sdp": answer, "run": run.run, "profile": profile.to_dict()})
        run.answered = True
        resume = offer.get("resume")
        if mode == "probe":
            if isinstance(resume, str) and resume:
                run.event("probe.reconnect", previousRun=resume[:40])
            run.event("probe.start", agent=str(offer.get("agent", ""))[:40], profile=profile.to_dict())
        if not await run.endpoint.wait_connected(limits.connect_timeout_s):
            reason = "media did not connect"
            if mode == "check":
                await _send(ws, {"type": "summary", "summary": {}, "verdict": run.judge()})
            raise p.refuse(p.MEDIA_FAILED, "the probe's media did not connect in time (firewall or no route?)")
        run.connected = True
        run.endpoint.start(run.on_interval)
        await _send(ws, {"type": "connected", "run": run.run})
        clean = await run.converse(ws, hello["token"])
        reason = "bye" if clean else reason
        if clean:
            await ws.close(1000)
    except p.Refusal as r:
        reason = r.reason
        await _refuse(ws, r, f"participant {run.owner.participant_id}" if run else "unauthenticated")
    except WebSocketDisconnect:
        pass
    except Exception:
        # A bug or a lost store must still end in a close frame, not a drop.
        log.exception("probe connection failed")
        reason = "internal error"
        await _refuse(ws, p.Refusal(1011, 500, "internal error"), "error")
    finally:
        if slot is not None:
            ADMITTED.pop(slot, None)
        if run is not None:
            ACTIVE.pop(run.run, None)
            try:
                await run.finish(clean, reason)
            except Exception:  # noqa: BLE001 - closing must not mask the socket's outcome
                log.exception("probe %s: finishing failed", run.run)


@router.get("/check/{token}", response_class=HTMLResponse, include_in_schema=False)
def check_page(token: str, request: Request) -> Response:
    """The connection check a client opens before the session (no account).
    The link itself is checked when the probe starts, so an expired or
    unknown one gets its message there, in the page's own words."""
    return render(request, "check.html", {"duration": _limits(request).check_duration_s})


class CheckLinkOut(BaseModel):
    url: str = Field(description="Send this to the client; it opens the connection check. Shown only once.")
    role: str
    expires_at: str | None


class CheckLinkIn(BaseModel):
    role: Literal["client", "clinician"] = "client"


@router.post("/api/v1/sessions/{session_id}/probe/check-link", response_model=CheckLinkOut, status_code=201,
             summary="Create a pre-session connection check link")
def make_check_link(session_id: int, request: Request,
                    identity: Annotated[Identity | None, Depends(api_identity)],
                    body: CheckLinkIn | None = None) -> CheckLinkOut:
    """A link the client (or clinician) opens before the session to check
    their connection for video. The result is stored on the session as an
    event of kind ``probe.check``."""
    role = body.role if body else "client"
    with request.app.state.engine.begin() as conn:
        try:
            service.get_session_row(conn, session_id, identity.clinician_id if identity else None)
        except service.NotFound:
            raise HTTPException(404, f"no session {session_id}") from None
        link = create_check_link(conn, session_id, role, now_ms(), _limits(request).check_link_days)
    return CheckLinkOut(url=f"{base_url(request)}/check/{link.token}", role=role, expires_at=to_iso(link.expires_ms))


FEATURE = Feature(
    "sidecar",
    routers=[router],
    templates=Path(__file__).parent / "templates",
    assets={
        "/plugin/bondline-probe.js": Asset("plugin", "js/bondline-probe.js"),
        "/plugin/bondline-pilot-tap.js": Asset("plugin", "js/bondline-pilot-tap.js"),
        "/plugin/bondline-check.js": Asset("server.sidecar", "static/bondline-check.js"),
        "/plugin/bondline-check.css": Asset("server.sidecar", "static/bondline-check.css"),
    },
)
