"""The participant side of a probe, from Python: ``bondline probe``.

Opens the ``/v1/probe`` socket with the participant's token, offers a
``media.probe`` endpoint to the server's sidecar, measures what arrives
from it and sends that as ``bondline.sample/1`` samples (source ``probe``)
through the ingest client ``plugin.uplink.Uplink``. When the socket or the
media connection drops it reconnects (the sidecar records a
``probe.reconnect``) until the duration is over. At the end it asks the
sidecar for its side and prints both directions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiortc import RTCIceServer
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from media.pilot_opus import encode_cycle
from media.probe.endpoint import ProbeEndpoint
from media.probe.profile import ProbeProfile
from media.probe.report import EventTracker, IntervalData, build_sample
from plugin.uplink import Uplink, ws_url_for

RETRY_CAP_S = 3.0

log = logging.getLogger("bondline.probe")
FATAL = {4400, 4401, 4403, 4415, 4422}


class ProbeFailed(Exception):
    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"{code}: {reason}" if code else reason)
        self.code = code
        self.reason = reason


@dataclass
class RunResult:
    run: str | None
    participant: dict[str, Any]
    sidecar: dict[str, Any] | None
    verdict: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class AgentResult:
    runs: list[RunResult] = field(default_factory=list)
    samples: int = 0
    uplink_acked: int | None = None
    uplink_outstanding: int | None = None

    @property
    def last(self) -> RunResult | None:
        return self.runs[-1] if self.runs else None


class ProbeAgent:
    """Runs probes against one server for one participant token."""

    def __init__(self, server: str, token: str, profile: ProbeProfile | None = None, *,
                 on_interval: Callable[[IntervalData, dict[str, Any]], None] | None = None,
                 uplink: bool = True, endpoint_hook: Callable[[ProbeEndpoint], None] | None = None,
                 recognise_pilot: bool = True, key_interval: int = 1) -> None:
        self.server = server.rstrip("/")
        self.key_interval = key_interval  # > 1: inter frames, as a browser sends (bench/sidecar.py)
        self.token = token
        self.profile = profile or ProbeProfile()
        self.on_interval = on_interval
        self.endpoint_hook = endpoint_hook
        self.recognise_pilot = recognise_pilot
        self.check = token.startswith("blc_")
        self.uplink = Uplink(server, token) if uplink and not self.check else None
        self.endpoint: ProbeEndpoint | None = None
        self.result = AgentResult()
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self, duration_s: float | None = None, *, reconnect: bool = True) -> AgentResult:
        if self.uplink is not None:
            await self.uplink.start(wait_s=0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + duration_s if duration_s else None
        previous: str | None = None
        failures = 0
        try:
            while not self._stop.is_set():
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0.5:
                    break
                try:
                    result = await self._run_once(remaining, previous)
                    self.result.runs.append(result)
                    if result.error is None:
                        break
                    previous = result.run or previous
                except ProbeFailed as e:
                    if e.code in FATAL or not reconnect:
                        raise
                    self.result.runs.append(RunResult(None, {}, None, error=str(e)))
                if not reconnect:
                    break
                failures += 1
                # A probe is short (a minute by default): waiting long between tries would
                # spend it waiting, so the back-off stops growing at 3 s (jittered).
                delay = min(RETRY_CAP_S, 0.5 * 2 ** min(failures, 3)) * random.uniform(0.5, 1.0)
                log.info("probe reconnecting in %.1fs", delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
        finally:
            if self.uplink is not None:
                await self.uplink.close(timeout=10)
                self.result.uplink_acked = self.uplink.stats.acked
                self.result.uplink_outstanding = self.uplink.outstanding
        return self.result

    async def _run_once(self, duration_s: float | None, resume: str | None) -> RunResult:
        url = ws_url_for(self.server, "/v1/probe")
        try:
            async with connect(url, open_timeout=10, proxy=None, compression=None, max_size=None,
                               close_timeout=2) as ws:
                return await self._converse(ws, duration_s, resume)
        except ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd is not None else 1006
            raise ProbeFailed(code, e.rcvd.reason if e.rcvd is not None else "connection lost") from None
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as e:
            raise ProbeFailed(None, f"{type(e).__name__}: {e}") from None

    async def _expect(self, ws: ClientConnection, kind: str, timeout: float) -> dict[str, Any]:
        msg = orjson.loads(await asyncio.wait_for(ws.recv(), timeout))
        if msg.get("type") == "error":
            raise ProbeFailed(int(msg.get("code", 0)), str(msg.get("reason", "")))
        if msg.get("type") != kind:
            raise ProbeFailed(None, f"expected {kind!r}, got {msg.get('type')!r}")
        return msg  # type: ignore[no-any-return]

    async def _converse(self, ws: ClientConnection, duration_s: float | None, resume: str | None) -> RunResult:
        await ws.send(orjson.dumps({"type": "auth", "token": self.token}).decode())
        welcome = await self._expect(ws, "welcome", 15)
        if welcome.get("mode") == "check" and duration_s is None:
            duration_s = float(welcome.get("checkDurationS", 10))
        servers = [RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
                   for s in welcome.get("iceServers") or []]
        await asyncio.to_thread(encode_cycle, self.profile.ptime_ms)  # once per process, off the loop
        endpoint = self.endpoint = ProbeEndpoint(self.profile, "participant", ice_servers=servers,
                                                 recognise_pilot=self.recognise_pilot,
                                                 key_interval=self.key_interval)
        tracker: EventTracker | None = None
        try:
            offer = await endpoint.make_offer()
            if self.endpoint_hook is not None:
                self.endpoint_hook(endpoint)  # transports exist now, and have not connected yet
            await ws.send(orjson.dumps({"type": "offer", "sdp": offer, "profile": self.profile.to_dict(),
                                        "agent": "python", "resume": resume}).decode())
            answer = await self._expect(ws, "answer", 30)
            endpoint.run = str(answer.get("run") or endpoint.run)
            tracker = EventTracker(self.profile, "participant", endpoint.run)
            await endpoint.accept_answer(answer["sdp"])
            await self._expect(ws, "connected", 40)
            endpoint.start(lambda d: self._interval(d, tracker))
            outcome = await self._wait(ws, endpoint, duration_s)
            if outcome is not None:
                return RunResult(endpoint.run, endpoint.summary(), None, error=outcome)
            last = await endpoint.stop_intervals()
            if last is not None:
                self._interval(last, tracker)
            endpoint.freeze()
            mine = endpoint.summary()
            await ws.send(orjson.dumps({"type": "bye", "sent": mine["sent"], "summary": mine}).decode())
            reply = await self._expect(ws, "summary", 15)
            sidecar = reply.get("summary") or {}
            participant = endpoint.summary(sidecar.get("sent"))
            return RunResult(endpoint.run, participant, sidecar, reply.get("verdict"))
        finally:
            if tracker is not None:
                for ev in tracker.close():
                    self._submit_event(ev)
            await endpoint.close()

    async def _wait(self, ws: ClientConnection, endpoint: ProbeEndpoint, duration_s: float | None) -> str | None:
        """Run until the duration is over (None) or the run broke (a reason)."""
        failed = asyncio.Event()

        def state() -> None:
            if endpoint.pc.connectionState in ("failed", "closed"):
                failed.set()

        endpoint.pc.on("connectionstatechange", state)
        waits = [asyncio.create_task(self._stop.wait()), asyncio.create_task(failed.wait()),
                 asyncio.create_task(ws.wait_closed())]
        try:
            done, _ = await asyncio.wait(waits, timeout=duration_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if waits[1] in done:
            return "media connection failed"
        if waits[2] in done:
            return f"probe socket closed ({ws.close_code} {ws.close_reason or ''})".strip()
        return None

    def _interval(self, data: IntervalData, tracker: EventTracker) -> None:
        sample = build_sample(data)
        sample["probe"]["agent"] = "python"
        if self.uplink is not None:
            self.uplink.submit(sample)
        self.result.samples += 1
        for ev in tracker.interval(data):
            self._submit_event(ev)
        if self.on_interval is not None:
            self.on_interval(data, sample)

    def _submit_event(self, event: dict[str, Any]) -> None:
        if self.uplink is not None:
            self.uplink.submit_event(event)
