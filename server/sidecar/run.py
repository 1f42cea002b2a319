"""One probe run on the server: the sidecar's side of a ``/v1/probe`` socket.

Protocol (docs/probe.md, "Signaling"):
  client -> {"type": "auth", "token": "blp_..." | "blc_..."}
  server -> {"type": "welcome", "mode": "probe" | "check", "iceServers": [...], ...}
  client -> {"type": "offer", "sdp": ..., "profile": {...}, "resume": <earlier run id> | null}
  server -> {"type": "answer", "sdp": ..., "run": ..., "profile": {...}}
  server -> {"type": "connected"}                       (media and ping channel up)
  client -> {"type": "report", "batch": n, "samples": [...], "events": [...]}   (browsers)
  server -> {"type": "ack", "batch": n, "stored": k, "duplicates": d, "events": e}
  client -> {"type": "bye", "sent": {"frames": n, "pings": m}, "summary": {...}}
  server -> {"type": "summary", "summary": {...}, "verdict": {...} (check mode)}, then closes 1000.
A refused message closes the socket with a 44xx/45xx code after an
``error`` message, as on the telemetry socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from fastapi import WebSocket
from starlette.concurrency import run_in_threadpool

from media.probe.endpoint import ProbeEndpoint
from media.probe.profile import ProbeProfile
from media.probe.report import EventTracker, IntervalData, build_sample
from server.config import ProbeSettings, Settings
from server.ingest import protocol as p
from server.ingest.writer import IngestWriter
from server.sessions.tokens import TokenError, TokenOwner, resolve_token
from server.sidecar import store
from server.sidecar.check import SEVERITY, figures_from, judge
from server.sidecar.ice import ice_servers
from server.sidecar.links import CHECK_PREFIX, LinkError, resolve_check_link
from server.timeutil import now_ms

log = logging.getLogger("bondline.sidecar")

# Runs hosted by this process (the capacity limit is per process).
ACTIVE: dict[str, SidecarRun] = {}


def authenticate(app: Any, token: object) -> tuple[TokenOwner, str]:
    """(owner, mode) for a participant token or a check link; Refusal otherwise."""
    settings: Settings = app.state.settings
    if not isinstance(token, str):
        raise p.refuse(p.UNAUTHORIZED, "missing token")
    with app.state.engine.begin() as conn:
        if token.startswith(CHECK_PREFIX):
            try:
                link = resolve_check_link(conn, token, now_ms())
            except LinkError as e:
                raise p.refuse(p.EXPIRED if e.expired else p.UNAUTHORIZED, str(e)) from None
            return TokenOwner(link.participant_id, link.session_id, link.role), "check"
        try:
            owner = resolve_token(conn, settings, token, now_ms())
        except TokenError as e:
            raise p.refuse(p.EXPIRED if e.expired else p.UNAUTHORIZED, str(e)) from None
    return owner, "probe"


def negotiate_profile(raw: object, mode: str, limits: ProbeSettings) -> ProbeProfile:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise p.refuse(p.INVALID, "profile must be an object")
    try:
        profile = ProbeProfile.from_dict(raw)
    except (TypeError, ValueError) as e:
        raise p.refuse(p.INVALID, f"profile: {e}") from None
    problems = profile.problems(max_fps=limits.max_fps, max_ping_hz=limits.max_ping_hz)
    if problems:
        raise p.refuse(p.INVALID, "profile: " + "; ".join(problems))
    return profile


class SidecarRun:
    def __init__(self, app: Any, owner: TokenOwner, mode: str, profile: ProbeProfile, limits: ProbeSettings) -> None:
        self.app = app
        self.settings: Settings = app.state.settings
        self.writer: IngestWriter = app.state.writer
        self.owner = owner
        self.mode = mode
        self.limits = limits
        self.endpoint = ProbeEndpoint(profile, "sidecar", ice_servers=ice_servers(limits),
                                      recognise_pilot=limits.recognise_pilot)
        self.run = self.endpoint.run
        self.tracker = EventTracker(profile, "sidecar", self.run)
        self.connected = False
        self.answered = False  # a refused offer leaves no trace in the store
        self.verdict: dict[str, Any] | None = None
        self.summary: dict[str, Any] | None = None
        self.peer_sent: dict[str, Any] = {}
        self.participant_summary: dict[str, Any] | None = None
        self.failed = asyncio.Event()
        self.revoked = False  # the token stopped being valid mid-run: store nothing more
        self._writes: set[asyncio.Task[Any]] = set()
        # A probe's first stored figures start the session, as a collector's do;
        # a check (before the session) never does.
        self._to_start: int | None = owner.session_id if mode == "probe" else None
        self.endpoint.pc.on("connectionstatechange", self._state)

    def _state(self) -> None:
        if self.endpoint.pc.connectionState == "failed":
            self.failed.set()

    # -- storing -----------------------------------------------------------

    def _store_later(self, samples: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
        if self.revoked:
            return  # an erased participant has nowhere to store to; an ended session takes no more
        if self.mode == "check":
            samples = []  # a pre-session check stores only its verdict
            events = [e for e in events if e["kind"] == "probe.check"]
        if not samples and not events:
            return
        task = asyncio.create_task(self._store(samples, events))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _store(self, samples: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
        try:
            start, self._to_start = self._to_start, None
            await store.write(self.writer, self.settings, self.owner, samples, events, start_session=start)
        except p.Refusal as r:  # our own figures out of the schema's range: a bug, not input
            log.error("probe %s: sample refused by the schema: %s", self.run, r)
        except Exception:  # noqa: BLE001 - the store's own retries failed; keep probing
            log.exception("probe %s: could not store figures", self.run)

    def on_interval(self, data: IntervalData) -> None:
        self._store_later([build_sample(data)], self.tracker.interval(data))

    def event(self, kind: str, **data: Any) -> None:
        self._store_later([], [store.probe_event(kind, run=self.run, side="sidecar", **data)])

    # -- the conversation --------------------------------------------------

    async def converse(self, ws: WebSocket, token: str) -> bool:
        """Serve the client's messages; True when it ended with a clean bye."""
        bucket = p.TokenBucket(self.settings.rate_messages_per_s, self.settings.rate_burst)
        limit = self.limits.check_duration_s + 20 if self.mode == "check" else self.limits.max_duration_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        failed = asyncio.create_task(self.failed.wait())
        revoked = asyncio.create_task(self._watch_token(token))
        try:
            while True:
                receive = asyncio.create_task(ws.receive())
                done, _ = await asyncio.wait({receive, failed, revoked}, timeout=max(0.0, deadline - loop.time()),
                                             return_when=asyncio.FIRST_COMPLETED)
                if receive not in done:
                    receive.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await receive
                    if revoked in done:
                        self.revoked = True
                        raise revoked.result()
                    if failed in done:
                        raise p.refuse(p.MEDIA_FAILED, "the probe's media connection failed")
                    raise p.refuse(p.MEDIA_FAILED, f"probe run reached its limit of {limit:g} s")
                message = receive.result()
                if message["type"] == "websocket.disconnect":
                    return False
                if not bucket.take():
                    raise p.refuse(p.RATE_LIMITED, f"more than {self.settings.rate_messages_per_s:g} messages/s")
                msg = p.parse_json(message.get("text") or message.get("bytes") or b"", self.settings)
                kind = msg.get("type")
                if kind == "report":
                    await self._report(ws, msg)
                elif kind == "bye":
                    await self._bye(ws, msg)
                    return True
                elif kind == "ping":
                    await ws.send_text(orjson.dumps({"type": "pong", "t": msg.get("t")}).decode())
                else:
                    raise p.refuse(p.MALFORMED, f"unknown message type {kind!r}")
        finally:
            failed.cancel()
            revoked.cancel()

    async def _watch_token(self, token: str) -> p.Refusal:
        """Look the token up again now and then, as the telemetry socket does: a
        session ended or a client erased while the probe runs stops it (4403)."""
        while True:
            await asyncio.sleep(self.settings.token_recheck_s)
            try:
                await authenticate_async(self.app, token)
            except p.Refusal as r:
                if self.mode == "probe" and r.ws_code == p.UNAUTHORIZED[0]:
                    # The token was valid at auth, so it vanishing means its participant was erased.
                    return p.refuse(p.EXPIRED, "this participant no longer exists (the client's data was "
                                               "erased); stop probing")
                return r
            except Exception:  # noqa: BLE001 - the store is away: keep probing, look again later
                log.debug("probe token re-check failed; trying again later", exc_info=True)

    async def _report(self, ws: WebSocket, msg: dict[str, Any]) -> None:
        samples = msg.get("samples", [])
        events = msg.get("events", [])
        problem = store.check_participant_samples(samples) or store.check_events(events)
        if problem:
            raise p.refuse(p.INVALID, problem)
        if self.mode == "check":
            result = {"stored": 0, "duplicates": 0, "events": 0}
        else:
            start, self._to_start = self._to_start, None
            written = await store.write(self.writer, self.settings, self.owner, samples, events, start_session=start)
            result = {"stored": written.stored, "duplicates": written.duplicates, "events": written.events_stored}
        await ws.send_text(orjson.dumps({"type": "ack", "batch": msg.get("batch"), **result}).decode())

    async def _bye(self, ws: WebSocket, msg: dict[str, Any]) -> None:
        sent = msg.get("sent")
        self.peer_sent = sent if isinstance(sent, dict) else {}
        summary = msg.get("summary")
        self.participant_summary = summary if isinstance(summary, dict) else None
        last = await self.endpoint.stop_intervals()
        if last is not None:
            self.on_interval(last)
        self.endpoint.freeze()
        reply: dict[str, Any] = {"type": "summary", "summary": self.endpoint.summary(self.peer_sent)}
        if self.mode == "check":
            reply["verdict"] = self.judge()
        await ws.send_text(orjson.dumps(reply).decode())

    def judge(self) -> dict[str, Any]:
        if self.verdict is None:
            started = self.endpoint.started_ms or now_ms()
            duration = max(0.0, (now_ms() - started) / 1000.0)
            facts = self.endpoint.connection_facts()
            figures = figures_from(self.endpoint.summary(self.peer_sent), self.participant_summary, duration,
                                   connected=self.connected, relay="relay" in (facts.get("localCandidateType"),
                                                                               facts.get("remoteCandidateType")))
            self.verdict = judge(figures).to_dict()
            self.event("probe.check", severity=SEVERITY[self.verdict["level"]],
                       verdict=self.verdict)
        return self.verdict

    async def finish(self, clean: bool, reason: str) -> None:
        """Last partial interval, open episodes, the end event; then close the peer."""
        if not self.answered:
            await self.endpoint.close()
            return
        last = await self.endpoint.stop_intervals()
        if last is not None:
            self.on_interval(last)
        events = self.tracker.close()
        self.summary = self.endpoint.summary(self.peer_sent)
        if self.mode == "check" and self.verdict is None:
            self.judge()
        events.append(store.probe_event("probe.end", run=self.run, side="sidecar", clean=clean, reason=reason,
                                        summary=self.summary))
        self._store_later([], events)
        await self.endpoint.close()
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)


async def authenticate_async(app: Any, token: object) -> tuple[TokenOwner, str]:
    return await run_in_threadpool(authenticate, app, token)
