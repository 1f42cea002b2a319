"""A seeded, scriptable impairment between two aiortc peers in one process.

This kernel has no netem, so the impairment sits in user space, wrapped
around one peer's aiortc ICE transport (``RTCIceTransport._send`` and
``_recv``): every datagram that peer sends ("up") or receives ("down")
passes through it. Datagrams are classified the way RFC 7983 demultiplexes
them (STUN / DTLS / SRTP), RTP by payload type (audio, video), RTCP, and
DTLS records big enough to be the probe's 160-byte pings ("ping").

Per direction and class it delays (base + uniform jitter, delivered in
order), drops at random (seeded), drops scripted outages (a time window,
or the next N video frames by RTP timestamp) and holds scripted stalls
(everything of the class waits until the stall ends, then goes in order).
Each datagram's fate is recorded, which is the ground truth the tests
compare the probe's figures with.
"""

from __future__ import annotations

import asyncio
import random
import struct
from dataclasses import dataclass, field
from typing import Any

PING_MIN_BYTES = 150  # a 160-byte ping plus SCTP and DTLS framing; SACKs are ~65 bytes


@dataclass
class Record:
    direction: str
    cls: str
    t_in: float  # loop time, s
    t_out: float | None  # None: dropped
    size: int
    rtp_ts: int | None = None
    rtp_seq: int | None = None

    @property
    def delay_ms(self) -> float | None:
        return None if self.t_out is None else (self.t_out - self.t_in) * 1000.0


@dataclass
class Script:
    """One scripted action on (direction, class) from ``start`` (loop time, s)."""

    direction: str
    cls: str
    action: str  # "drop" (a window), "hold" (a stall), "drop_frames" (the next N frames)
    start: float
    end: float = 0.0
    frames: int = 0
    dropped_ts: set[int] = field(default_factory=set)


class Impairment:
    def __init__(self, seed: int, payload_types: dict[int, str]) -> None:
        self.rng = random.Random(seed)
        self.payload_types = payload_types
        self.delay_ms: dict[str, float] = {"up": 0.0, "down": 0.0}
        self.jitter_ms: dict[str, float] = {"up": 0.0, "down": 0.0}
        self.loss: dict[tuple[str, str], float] = {}
        self.scripts: list[Script] = []
        self.records: list[Record] = []
        self.active = False
        self._last_out: dict[tuple[str, str], float] = {}
        self._queue: asyncio.Queue[bytes | BaseException] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None

    # -- wiring ------------------------------------------------------------

    def attach(self, ice: Any) -> None:
        """Wrap an aiortc RTCIceTransport (before it connects)."""
        send, recv = ice._send, ice._recv
        loop = asyncio.get_running_loop()

        async def late_send(data: bytes) -> None:
            try:
                await send(data)
            except ConnectionError:
                pass  # the peer closed while this datagram was still delayed

        async def impaired_send(data: bytes) -> None:
            t_out = self._decide("up", data, loop.time())
            if t_out is None:
                return
            if t_out <= loop.time():
                await send(data)
            else:
                loop.call_at(t_out, lambda: asyncio.ensure_future(late_send(data)))

        async def pump() -> None:
            while True:
                try:
                    data = await recv()
                except BaseException as e:  # noqa: BLE001 - handed to the reader as it came
                    self._queue.put_nowait(e)
                    return
                t_out = self._decide("down", data, loop.time())
                if t_out is None:
                    continue
                if t_out <= loop.time():
                    self._queue.put_nowait(data)
                else:
                    loop.call_at(t_out, self._queue.put_nowait, data)

        async def impaired_recv() -> bytes:
            if self._pump is None:
                self._pump = asyncio.ensure_future(pump())
            item = await self._queue.get()
            if isinstance(item, BaseException):
                raise item
            return item

        ice._send = impaired_send
        ice._recv = impaired_recv

    def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()

    # -- classification and decisions ---------------------------------------

    def classify(self, data: bytes) -> tuple[str, int | None, int | None]:
        first = data[0]
        if first < 4:
            return "stun", None, None
        if 19 < first < 64:
            return ("ping" if len(data) >= PING_MIN_BYTES else "sctp"), None, None
        if 127 < first < 192 and len(data) >= 12:
            if 192 <= data[1] <= 223:
                return "rtcp", None, None
            seq, ts = struct.unpack_from("!HI", data, 2)
            return self.payload_types.get(data[1] & 0x7F, "rtp"), ts, seq
        return "other", None, None

    def _decide(self, direction: str, data: bytes, now: float) -> float | None:
        cls, ts, seq = self.classify(data)
        rec = Record(direction, cls, now, now, len(data), ts, seq)
        self.records.append(rec)
        if not self.active or cls == "stun":
            return now
        for s in self.scripts:
            if s.direction != direction or s.cls != cls or now < s.start:
                continue
            if s.action == "drop" and now < s.end:
                rec.t_out = None
                return None
            if s.action == "drop_frames" and ts is not None:
                if ts in s.dropped_ts or len(s.dropped_ts) < s.frames:
                    s.dropped_ts.add(ts)
                    rec.t_out = None
                    return None
        if self.rng.random() < self.loss.get((direction, cls), 0.0):
            rec.t_out = None
            return None
        delay = self.delay_ms[direction] + self.rng.uniform(-1, 1) * self.jitter_ms[direction]
        t_out = now + max(delay, 0.0) / 1000.0
        for s in self.scripts:
            if s.action == "hold" and s.direction == direction and s.cls == cls and s.start <= now < s.end:
                t_out = max(t_out, s.end)
        key = (direction, cls)
        # In order per direction and class: jitter never reorders a stream.
        # Strictly later than the previous one, too: the event loop's timer
        # heap does not keep timers due at the same instant in order.
        t_out = max(t_out, self._last_out.get(key, 0.0) + 1e-6)
        self._last_out[key] = t_out
        rec.t_out = t_out
        return t_out

    # -- truth ---------------------------------------------------------------

    def select(self, direction: str, cls: str, t0: float = float("-inf"), t1: float = float("inf")) -> list[Record]:
        return [r for r in self.records if r.direction == direction and r.cls == cls and t0 <= r.t_in < t1]
