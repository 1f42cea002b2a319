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
from sqlalchemy import func, select, update
from starlette.concurrency import run_in_threadpool

from media.probe.profile import PROBE_SEQ_BASE
from server.config import Settings
from server.ingest import protocol as p
from server.ingest.schema import SCHEMA_ID
from server.ingest.writer import IngestWriter, WriteResult
from server.sessions.tokens import TokenError, TokenOwner, resolve_token
from server.store import tables as t
from server.timeutil import now_ms

log = logging.getLogger("bondline.ingest")
router = APIRouter(tags=["telemetry"])

# Per-process HTTP rate limits by participant; WebSockets keep their own.
_http_buckets: dict[int, p.TokenBucket] = {}


def _authenticate(request_app: Any, token: object) -> tuple[TokenOwner, int | None]:
    settings: Settings = request_app.state.settings
    if not isinstance(token, str):
        raise p.refuse(p.UNAUTHORIZED, "missing token")
    engine = request_app.state.engine
    # Reads only, outside a write transaction: thousands of collectors may
    # reconnect at once, and with SQLite every write competes with the
    # ingest writer for the one write lock.
    with engine.connect() as conn:
        try:
            owner = resolve_token(conn, settings, token, now_ms())
        except TokenError as e:
            raise p.refuse(p.EXPIRED if e.expired else p.UNAUTHORIZED, str(e)) from None
        # Probe samples live at seq >= PROBE_SEQ_BASE (docs/probe.md,
        # "Samples"): a collector continues after its own last seq. The range
        # condition keeps this a single index lookup.
        last = conn.execute(
            select(func.max(t.sample.c.seq)).where(
                t.sample.c.participant_id == owner.participant_id, t.sample.c.seq < PROBE_SEQ_BASE
            )
        ).scalar()
        started = conn.execute(select(t.session.c.started_ms).where(t.session.c.id == owner.session_id)).scalar()
    if started is None:
        # The first collector to connect marks the session as started.
        with engine.begin() as conn:
            conn.execute(
                update(t.session)
                .where(t.session.c.id == owner.session_id, t.session.c.started_ms.is_(None))
                .values(started_ms=now_ms())
            )
    return owner, last


async def _store(writer: IngestWriter, msg: dict[str, Any], settings: Settings, owner: TokenOwner) -> dict[str, Any]:
    batch = p.validate_batch(msg, settings)
    samples, events = p.to_rows(msg, batch, owner)
    result: WriteResult = await writer.write(samples, events)
    return {
        "type": "ack",
        "batch": batch.get("batch"),
        "seq": max((s["seq"] for s in batch.get("samples", ())), default=None),
        "stored": result.stored,
        "duplicates": result.duplicates,
        "events": result.events_stored,
    }


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
        me, last_seq = await run_in_threadpool(_authenticate, app, hello.get("token"))
        owner = me
        await writer.write([], [p.server_event(me, "collector.connect", {"lastSeq": last_seq, "channel": "websocket"})])
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
            msg = p.parse_json(message.get("text") or message.get("bytes") or b"", settings)
            kind = msg.get("type")
            if kind == "samples":
                ack = await _store(writer, msg, settings, me)
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
        msg = p.parse_json(bytes(body), settings)
        token = msg.pop("token", None)
        auth = request.headers.get("authorization", "")
        if token is None and auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        owner, _ = await run_in_threadpool(_authenticate, app, token)
        bucket = _http_buckets.setdefault(
            owner.participant_id, p.TokenBucket(settings.rate_messages_per_s, settings.rate_burst)
        )
        if not bucket.take():
            raise p.refuse(p.RATE_LIMITED, f"more than {settings.rate_messages_per_s:g} requests/s")
        msg.setdefault("type", "samples")
        ack = await _store(app.state.writer, msg, settings, owner)
        return JSONResponse(ack)
    except p.Refusal as r:
        log.info("telemetry POST refused: %s", r)
        return JSONResponse({"error": r.reason, "code": r.ws_code}, status_code=r.http_status)
