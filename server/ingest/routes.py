"""Telemetry ingest endpoints: WebSocket ``/v1/telemetry`` and its HTTP twin.

Protocol (docs/telemetry.md has the full text):
  client -> {"type": "auth", "token": "blp_..."}
  server -> {"type": "welcome", "lastSeq": N | null, ...}
  client -> {"type": "samples", "schema": "bondline.sample/1", "batch": 7,
             "samples": [...], "events": [...]}
  server -> {"type": "ack", "batch": 7, "seq": <highest seq of the batch>,
             "stored": n, "duplicates": d, "events": e}   (after commit)
A refused message closes the socket with a 44xx code; an ``error`` message
with the full reason is sent first.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from server.config import Settings
from server.ingest import protocol as p
from server.ingest.resolver import Admission, TokenResolver
from server.ingest.schema import SCHEMA_ID, Batch
from server.ingest.writer import IngestWriter, WriteResult
from server.sessions.tokens import TokenError, TokenOwner
from server.timeutil import now_ms
from server.web.assets import Asset
from server.web.features import Feature

log = logging.getLogger("bondline.ingest")
router = APIRouter(tags=["telemetry"])

# Per-process HTTP rate limits by participant; WebSockets keep their own.
_http_buckets: dict[int, p.TokenBucket] = {}


async def _admit(app: Any, token: object) -> Admission:
    if not isinstance(token, str):
        raise p.refuse(p.UNAUTHORIZED, "missing token")
    resolver: TokenResolver = app.state.resolver
    try:
        return await resolver.resolve(token)
    except TokenError as e:
        raise p.refuse(p.EXPIRED if e.expired else p.UNAUTHORIZED, str(e)) from None


async def _store(app: Any, token: str, batch: Batch, owner: TokenOwner,
                 start_session: int | None = None) -> dict[str, Any]:
    samples, events = p.to_rows(batch, owner)
    writer: IngestWriter = app.state.writer
    try:
        result: WriteResult = await writer.write(samples, events, start_session=start_session)
    except Exception as e:  # noqa: BLE001 - the store refused this batch's rows; it alone is refused
        raise await _store_refusal(app, token, e) from None
    return {
        "type": "ack",
        "batch": batch.get("batch"),
        "seq": max((s["seq"] for s in batch.get("samples", ())), default=None),
        "stored": result.stored,
        "duplicates": result.duplicates,
        "events": result.events_stored,
    }


async def _store_refusal(app: Any, token: str, error: Exception) -> p.Refusal:
    """What to tell a collector whose batch the store refused. Transient store
    faults never get here (the writer waits them out), so this is about the
    batch or its participant, and resending it would fail the same way."""
    try:
        await app.state.resolver.resolve(token)
    except TokenError as e:
        if e.expired:
            return p.refuse(p.EXPIRED, str(e))
        return p.refuse(p.EXPIRED, "this participant no longer exists (the client's data was erased); stop sending")
    except Exception:  # noqa: BLE001 - the store is down as well: say so below
        log.debug("token lookup after a store refusal failed", exc_info=True)
    log.warning("the store refused a telemetry batch: %s", error)
    return p.refuse(p.INVALID, "the store refused this batch; do not resend it unchanged")


class _TokenWatch:
    """Looks an open socket's token up again now and then: a session ended
    (expiry moves earlier) or a client erased while the socket is open stops
    it, as the docs promise (docs/security.md, "Ingest tokens")."""

    def __init__(self, app: Any, token: str, admission: Admission, every_s: float) -> None:
        self._app = app
        self._token = token
        self._expires_ms = admission.expires_ms
        self._every_ms = int(every_s * 1000)
        self._next_ms = now_ms() + self._every_ms

    async def check(self) -> None:
        now = now_ms()
        if now >= self._expires_ms:
            raise p.refuse(p.EXPIRED, "token expired: the session ended")
        if now < self._next_ms:
            return
        self._next_ms = now + self._every_ms
        try:
            self._expires_ms = (await self._app.state.resolver.resolve(self._token)).expires_ms
        except TokenError as e:
            if e.expired:
                raise p.refuse(p.EXPIRED, str(e)) from None
            raise p.refuse(p.EXPIRED, "this participant no longer exists (the client's data was erased); "
                                      "stop sending") from None
        except Exception:  # noqa: BLE001 - the store is away: keep the socket (acks wait), look again later
            log.debug("token re-check failed; trying again in %d ms", self._every_ms, exc_info=True)


async def _refuse_ws(ws: WebSocket, r: p.Refusal, who: str) -> None:
    log.info("telemetry refused (%s): %s", who, r)
    try:
        await ws.send_text(orjson.dumps({"type": "error", "code": r.ws_code, "reason": r.reason}).decode())
        # Close reasons are limited to 123 bytes by RFC 6455.
        await ws.close(code=r.ws_code, reason=r.reason.encode()[:120].decode("utf-8", "ignore"))
    except (RuntimeError, WebSocketDisconnect):
        pass


@router.websocket("/v1/telemetry")
async def telemetry_ws(ws: WebSocket) -> None:
    app = ws.app
    settings: Settings = app.state.settings
    writer: IngestWriter = app.state.writer
    await ws.accept()
    owner: TokenOwner | None = None
    bucket = p.TokenBucket(settings.rate_messages_per_s, settings.rate_burst)
    close_code = 1000
    try:
        try:
            first = await asyncio.wait_for(ws.receive(), timeout=settings.auth_timeout_s)
        except TimeoutError:
            raise p.refuse(p.AUTH_TIMEOUT, "no auth message in time") from None
        if first["type"] == "websocket.disconnect":
            return
        hello = p.parse_json(first.get("text") or first.get("bytes") or b"", settings)
        if hello.get("type") != "auth":
            raise p.refuse(p.UNAUTHORIZED, "the first message must be {\"type\": \"auth\", \"token\": ...}")
        token = hello.get("token")
        admission = await _admit(app, token)
        assert isinstance(token, str)  # _admit refused anything else
        me, last_seq = admission.owner, admission.last_seq
        owner = me
        watch = _TokenWatch(app, token, admission, settings.token_recheck_s)
        await writer.write(
            [], [p.server_event(me, "collector.connect", {"lastSeq": last_seq, "channel": "websocket"})],
            start_session=admission.session_to_start,
        )
        await ws.send_text(
            orjson.dumps(
                {
                    "type": "welcome",
                    "schema": SCHEMA_ID,
                    "session": me.session_id,
                    "participant": me.participant_id,
                    "role": me.role,
                    "lastSeq": last_seq,
                    "maxBatchSamples": settings.max_batch_samples,
                    "maxMessageBytes": settings.max_message_bytes,
                }
            ).decode()
        )
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                close_code = int(message.get("code", 1005))
                break
            if not bucket.take():
                raise p.refuse(p.RATE_LIMITED, f"more than {settings.rate_messages_per_s:g} messages/s")
            await watch.check()
            batch, msg = p.websocket_message(message.get("text") or message.get("bytes") or b"", settings)
            kind = msg.get("type")
            if batch is not None:
                ack = await _store(app, token, batch, me)
                await ws.send_text(orjson.dumps(ack).decode())
            elif kind == "ping":
                await ws.send_text(orjson.dumps({"type": "pong", "t": msg.get("t")}).decode())
            else:
                raise p.refuse(p.MALFORMED, f"unknown message type {kind!r}")
    except p.Refusal as r:
        close_code = r.ws_code
        await _refuse_ws(ws, r, f"participant {owner.participant_id}" if owner else "unauthenticated")
    except WebSocketDisconnect as d:
        close_code = d.code
    except Exception:
        # A bug or a lost store must still end in a close frame, not a drop.
        log.exception("telemetry connection failed")
        close_code = 1011
        await _refuse_ws(ws, p.Refusal(1011, 500, "internal error; resend unacknowledged samples"), "error")
    finally:
        if owner is not None:
            try:
                await writer.write([], [p.server_event(owner, "collector.disconnect", {"code": close_code})])
            except Exception:  # noqa: BLE001 - shutdown or store loss must not mask the close
                log.debug("could not record disconnect", exc_info=True)


@router.post(
    "/v1/telemetry",
    summary="Ingest a telemetry batch over HTTP (fallback for page unload)",
    responses={400: {}, 401: {}, 403: {}, 413: {}, 415: {}, 422: {}, 429: {}},
)
async def telemetry_http(request: Request) -> JSONResponse:
    """Takes the same batch as the WebSocket, plus ``token`` in the body (as
    ``navigator.sendBeacon`` cannot set headers) or an ``Authorization:
    Bearer`` header. Answers with the same ack once the batch is committed."""
    app = request.app
    settings: Settings = app.state.settings
    try:
        declared = int(request.headers.get("content-length") or 0)
        if declared > settings.max_message_bytes:
            raise p.refuse(p.TOO_LARGE, f"body of {declared} bytes exceeds {settings.max_message_bytes}")
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > settings.max_message_bytes:
                raise p.refuse(p.TOO_LARGE, f"body exceeds {settings.max_message_bytes} bytes")
        msg, token = p.http_message(bytes(body), settings)
        auth = request.headers.get("authorization", "")
        if token is None and auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        admission = await _admit(app, token)
        owner = admission.owner
        bucket = _http_buckets.setdefault(
            owner.participant_id, p.TokenBucket(settings.rate_messages_per_s, settings.rate_burst)
        )
        if not bucket.take():
            raise p.refuse(p.RATE_LIMITED, f"more than {settings.rate_messages_per_s:g} requests/s")
        batch = p.validate_batch(msg, settings)
        assert isinstance(token, str)  # _admit refused anything else
        ack = await _store(app, token, batch, owner, start_session=admission.session_to_start)
        return JSONResponse(ack)
    except ClientDisconnect:
        # Gone mid-body (or cut off by the body timeout): nothing was stored.
        return JSONResponse({"error": "the request body did not arrive", "code": 4400}, status_code=400)
    except p.Refusal as r:
        log.info("telemetry POST refused: %s", r)
        return JSONResponse({"error": r.reason, "code": r.ws_code}, status_code=r.http_status)


FEATURE = Feature(
    "ingest",
    routers=[router],
    # The browser collector, loaded by every participant's page.
    assets={"/plugin/bondline.js": Asset("plugin", "js/bondline.js")},
)
