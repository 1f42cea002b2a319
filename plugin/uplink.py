"""Uplink: the Python ingest client for ``bondline.sample/1`` telemetry.

Anything in Python that sends samples to a Bondline server uses this class
(the aiortc collector, the sidecar agents, importers of live feeds). It
speaks the WebSocket protocol of server/ingest/routes.py:

    -> {"type": "auth", "token": ...}
    <- {"type": "welcome", "lastSeq": N | null, ...}
    -> {"type": "samples", "schema": ..., "batch": k, "samples": [...], "events": [...]}
    <- {"type": "ack", "batch": k, ...}            (only after the server committed)

Delivery is at-least-once from here and exactly-once in the store, because
the server ignores a (participant, seq) it already has. So the rules are:
an item leaves the outbox only when its batch is acknowledged; everything
unacknowledged is resent after a reconnect; a seq is never reused, which is
why samples submitted without a seq are numbered from the welcome's
``lastSeq`` (a restarted collector continues where the last one stopped).

Refusals (close codes of server/ingest/protocol.py): 4401/4403 (unknown or
expired token) end the uplink for good; 4400/4413/4415/4422 refuse one batch,
whose items are then resent one by one so that only the bad item is dropped;
anything else (network loss, 4429, 4503, a restart) is retried with
exponential backoff and jitter. When the WebSocket keeps failing, the queue
is posted to ``POST /v1/telemetry`` instead (same batches, same acks).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from plugin.outbox import Batch, Item, Outbox, OutboxStats

log = logging.getLogger("bondline.uplink")

SCHEMA = "bondline.sample/1"
FATAL_CONNECTION = {4401, 4403}
FATAL_BATCH = {4400, 4413, 4415, 4422}
_HTTP_TO_WS = {400: 4400, 401: 4401, 403: 4403, 413: 4413, 415: 4415, 422: 4422, 429: 4429, 503: 4503}


@dataclass
class _Outcome:
    welcomed: bool = False
    code: int | None = None
    reason: str = ""


def ws_url_for(server_url: str, path: str = "/v1/telemetry") -> str:
    base = server_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[8:]
    elif base.startswith("http://"):
        base = "ws://" + base[7:]
    return base + path


def http_url_for(server_url: str, path: str = "/v1/telemetry") -> str:
    base = server_url.rstrip("/")
    if base.startswith("wss://"):
        base = "https://" + base[6:]
    elif base.startswith("ws://"):
        base = "http://" + base[5:]
    return base + path


class Uplink:
    """Streams samples and events to one participant's ingest endpoint."""

    def __init__(
        self,
        server_url: str,
        token: str,
        *,
        max_queue: int = 10_000,
        batch_max: int = 100,
        max_inflight: int = 4,
        http_fallback: bool = True,
        fallback_after: int = 3,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        compress: bool = False,
    ) -> None:
        if max_queue < 1 or batch_max < 1 or max_inflight < 1:
            raise ValueError("max_queue, batch_max and max_inflight must be positive")
        self.ws_url = ws_url_for(server_url)
        self.http_url = http_url_for(server_url)
        self._token = token
        self._outbox = Outbox(max_queue=max_queue, batch_max=batch_max)
        self._max_inflight = max_inflight
        self._http_fallback = http_fallback
        self._fallback_after = fallback_after
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._connect_timeout = connect_timeout_s
        # permessage-deflate sends ~10x fewer bytes but costs the server CPU per
        # message; a sample a second is ~11 kbit/s uncompressed, so off by default.
        self._compress = compress
        self._next_seq: int | None = None
        self._max_given_seq = -1
        self._server_batch_max = batch_max
        self._server_max_bytes = 1_048_576
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._welcomed = asyncio.Event()
        self._error: tuple[int, str] | None = None
        self.connected = False
        self.failed: str | None = None  # set when the server refused the token
        self.welcome: dict[str, Any] | None = None
        self.connects = 0
        self.connect_attempts = 0
        self.http_posts = 0

    # -- public API -------------------------------------------------------

    @property
    def stats(self) -> OutboxStats:
        return self._outbox.stats

    @property
    def outstanding(self) -> int:
        """Items submitted and neither acknowledged, rejected nor dropped."""
        return self._outbox.outstanding

    async def start(self, wait_s: float = 5.0) -> bool:
        """Start the background connection; returns whether the server
        welcomed it within ``wait_s`` (the uplink keeps trying regardless)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="bondline-uplink")
        if wait_s <= 0:
            return self._welcomed.is_set()
        try:
            await asyncio.wait_for(self._welcomed.wait(), wait_s)
        except TimeoutError:
            return False
        return True

    def next_seq(self) -> int:
        """The next unused seq for this participant (known after the first welcome)."""
        if self._next_seq is None:
            raise RuntimeError("next_seq() is known only after the server's welcome; "
                               "submit samples without 'seq' to have them numbered then")
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def submit(self, sample: dict[str, Any]) -> None:
        """Queue one ``bondline.sample/1`` sample. Without a ``seq`` it is
        numbered here (or at the first welcome, if that has not come yet)."""
        if "seq" in sample:
            seq = sample["seq"]
            if not isinstance(seq, int) or seq < 0:
                raise ValueError(f"seq must be a non-negative int, not {seq!r}")
            self._max_given_seq = max(self._max_given_seq, seq)
            if self._next_seq is not None:
                self._next_seq = max(self._next_seq, seq + 1)
        elif self._next_seq is not None:
            sample["seq"] = self.next_seq()
        self._outbox.add(Item("sample", sample))

    def submit_event(self, event: dict[str, Any]) -> None:
        """Queue one collector event (``kind``, ``tMs``; a ``key`` makes a
        resend exactly-once and is generated when missing)."""
        if "kind" not in event or "tMs" not in event:
            raise ValueError("an event needs 'kind' and 'tMs'")
        event.setdefault("key", uuid.uuid4().hex)
        self._outbox.add(Item("event", event))

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted is acknowledged (or rejected or
        dropped and counted). Returns False on timeout or a refused token."""
        deadline = time.monotonic() + timeout
        while self._outbox.outstanding:
            if self.failed is not None or time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def close(self, timeout: float = 5.0) -> bool:
        """Flush (within ``timeout``), then stop. Whatever the WebSocket could
        not deliver is tried once over HTTP. Returns whether all was delivered."""
        if self._task is not None and self.failed is None:
            await self.flush(timeout)
        self._stop.set()
        self._outbox.changed.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 3.0)
            except TimeoutError:
                self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._outbox.outstanding and self._http_fallback and self.failed is None:
            await self._post_pending(deadline=time.monotonic() + timeout)
        return self._outbox.outstanding == 0

    # -- the connection loop ----------------------------------------------

    def _backoff(self, failures: int) -> float:
        ceiling = min(self._backoff_max, self._backoff_initial * 2 ** max(failures - 1, 0))
        # "Equal jitter": never less than half the step, so a fleet of
        # collectors that lost one server spreads out without hammering it.
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            pass

    async def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            outcome = await self._connect_once()
            if outcome.welcomed:
                failures = 0
            if self._stop.is_set():
                break
            code = outcome.code
            if code in FATAL_CONNECTION:
                self.failed = f"{code}: {outcome.reason}"
                log.error("server refused the ingest token (%s); uplink stopped", self.failed)
                self._outbox.changed.set()
                return
            if code in FATAL_BATCH:
                # The bad batch is already set aside; the rest may go on soon.
                await self._sleep(0.05)
                continue
            failures += 1
            if self._http_fallback and failures >= self._fallback_after and not outcome.welcomed:
                await self._post_pending(deadline=time.monotonic() + self._connect_timeout)
                if self.failed is not None:
                    return
            delay = self._backoff(failures)
            log.info("uplink disconnected (%s %s); retrying in %.2fs", code, outcome.reason, delay)
            await self._sleep(delay)

    async def _connect_once(self) -> _Outcome:
        out = _Outcome()
        self._error = None
        self.connect_attempts += 1
        try:
            async with connect(
                self.ws_url,
                open_timeout=self._connect_timeout,
                proxy=None,
                compression="deflate" if self._compress else None,
                max_size=None,
                close_timeout=2,
            ) as ws:
                await ws.send(orjson.dumps({"type": "auth", "token": self._token}).decode())
                first = orjson.loads(await asyncio.wait_for(ws.recv(), self._connect_timeout))
                if first.get("type") == "error":
                    self._error = (int(first.get("code", 0)), str(first.get("reason", "")))
                    await ws.wait_closed()
                elif first.get("type") != "welcome":
                    raise ConnectionError(f"unexpected first message {first.get('type')!r}")
                else:
                    self._on_welcome(first)
                    out.welcomed = True
                    await self._converse(ws)
                    out.code = 1000
        except ConnectionClosed as e:
            out.code = e.rcvd.code if e.rcvd is not None else 1006
            out.reason = e.rcvd.reason if e.rcvd is not None else "connection lost"
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionError, orjson.JSONDecodeError) as e:
            out.reason = f"{type(e).__name__}: {e}"
        finally:
            self.connected = False
        if self._error is not None:
            out.code, out.reason = self._error
        if out.code in FATAL_BATCH:
            self._outbox.refuse_oldest(out.reason)
        self._outbox.requeue_inflight()
        return out

    def _on_welcome(self, msg: dict[str, Any]) -> None:
        self.welcome = msg
        self.connects += 1
        self.connected = True
        last = msg.get("lastSeq")
        start = max(last + 1 if isinstance(last, int) else 0, self._max_given_seq + 1, self._next_seq or 0)
        self._next_seq = self._outbox.assign_seqs(start)
        if isinstance(msg.get("maxBatchSamples"), int):
            self._server_batch_max = max(1, msg["maxBatchSamples"])
        if isinstance(msg.get("maxMessageBytes"), int):
            self._server_max_bytes = msg["maxMessageBytes"]
        self._welcomed.set()

    def _encode(self, limit: int) -> tuple[Batch, bytes] | None:
        while True:
            batch = self._outbox.take_batch(limit=min(limit, self._server_batch_max))
            if batch is None:
                return None
            data = orjson.dumps(batch.message(SCHEMA))
            if len(data) <= self._server_max_bytes * 0.9 or len(batch.items) == 1:
                return batch, data
            # Too big for one message: give the items back and take fewer.
            self._outbox.inflight.pop(batch.id)
            self._outbox.pending.extendleft(reversed(batch.items))
            limit = max(1, len(batch.items) // 2)

    async def _converse(self, ws: ClientConnection) -> None:
        receiver = asyncio.create_task(self._receive(ws))
        outbox = self._outbox
        try:
            while True:
                outbox.changed.clear()
                while len(outbox.inflight) < self._max_inflight and outbox.ready():
                    encoded = self._encode(self._server_batch_max)
                    if encoded is None:
                        break
                    await ws.send(encoded[1].decode())
                if self._stop.is_set() and not outbox.inflight:
                    await ws.close(1000, "collector stopping")
                    return
                changed = asyncio.create_task(outbox.changed.wait())
                await asyncio.wait({changed, receiver}, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                if receiver.done():
                    receiver.result()  # re-raises ConnectionClosed with the server's code
                    return
        finally:
            receiver.cancel()

    async def _receive(self, ws: ClientConnection) -> None:
        async for raw in ws:
            try:
                msg = orjson.loads(raw)
            except orjson.JSONDecodeError:
                log.warning("ignoring a non-JSON message from the server")
                continue
            kind = msg.get("type")
            if kind == "ack":
                self._outbox.ack(msg.get("batch"), int(msg.get("duplicates") or 0))
            elif kind == "error":
                self._error = (int(msg.get("code", 0)), str(msg.get("reason", "")))

    # -- HTTP fallback ----------------------------------------------------

    async def _post_pending(self, deadline: float) -> None:
        """POST queued batches until the queue is empty, the server refuses
        the token, the network fails again, or ``deadline`` passes."""
        outbox = self._outbox
        outbox.requeue_inflight()
        async with httpx.AsyncClient(timeout=self._connect_timeout, trust_env=False) as client:
            while outbox.ready() and time.monotonic() < deadline:
                encoded = self._encode(self._server_batch_max)
                if encoded is None:
                    return
                batch, _ = encoded
                body = batch.message(SCHEMA)
                body["token"] = self._token
                try:
                    r = await client.post(self.http_url, content=orjson.dumps(body),
                                          headers={"content-type": "application/json"})
                except httpx.HTTPError as e:
                    log.info("HTTP fallback failed: %s", e)
                    outbox.requeue_inflight()
                    return
                self.http_posts += 1
                if r.status_code == 200:
                    ack = r.json()
                    outbox.ack(batch.id, int(ack.get("duplicates") or 0))
                    continue
                code = _HTTP_TO_WS.get(r.status_code, 4503)
                reason = _reason(r)
                if code in FATAL_CONNECTION:
                    self.failed = f"{code}: {reason}"
                    log.error("server refused the ingest token (%s); uplink stopped", self.failed)
                    outbox.requeue_inflight()
                    return
                if code in FATAL_BATCH:
                    outbox.refuse_oldest(reason)
                    continue
                outbox.requeue_inflight()
                return


def _reason(r: httpx.Response) -> str:
    try:
        return str(r.json().get("error", r.text))
    except ValueError:
        return r.text[:200]
