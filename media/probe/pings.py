"""Stamped pings over an unordered, unreliable data channel (docs/probe.md, "Pings").

Both ends send a ping every 1/ping_hz seconds. Each ping carries its own
number and send time, and echoes the newest ping received from the other
end with the time that one arrived (NTP's four timestamps, without a
separate reply message). So every ping received yields:
- loss in its direction, exactly, from gaps in the other end's numbers;
- a round trip: now - (when the echoed ping left) - (how long the other end
  held it), the hold measured on the other end's clock, so no clock offset
  enters it;
- a clock offset estimate ((t2 - t1) + (t3 - t4)) / 2, whose error is at
  most half that round trip; the estimate from the fastest recent round
  trip is kept.

Pings are padded to a fixed 160 bytes: big enough to stand apart from
SCTP's own small packets, which the ground-truth test relies on.
"""

from __future__ import annotations

import struct
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

MAGIC = b"BLP1"
PING_BYTES = 160
_HEAD = struct.Struct("<4sIdId")  # magic, seq, send wall ms, echo seq, echo arrival wall ms
NO_ECHO = 0xFFFFFFFF
_PAD = bytes(PING_BYTES - _HEAD.size)
OFFSET_WINDOW = 64  # round trips the offset estimate picks its fastest from


def now_wall_ms() -> float:
    return time.time() * 1000.0


def now_mono_ms() -> float:
    return time.monotonic() * 1000.0


@dataclass
class PingInterval:
    sent: int = 0
    received: int = 0
    lost: int = 0
    rtt_ms: list[float] = field(default_factory=list)


@dataclass
class PingTotals:
    sent: int = 0
    received: int = 0
    lost: int = 0
    first_seq: int | None = None
    highest_seq: int | None = None
    duplicates: int = 0
    malformed: int = 0
    rtts: int = 0


class PingMeter:
    """Builds outgoing pings and reads incoming ones."""

    def __init__(self) -> None:
        self.totals = PingTotals()
        self.interval = PingInterval()
        self.rtt_all: deque[float] = deque(maxlen=100_000)
        self.offset_ms: float | None = None  # peer clock minus ours
        self.offset_error_ms: float | None = None
        self._next_seq = 0
        # seq -> (mono send ms, wall send ms) of our pings still awaiting an echo
        self._sent: dict[int, tuple[float, float]] = {}
        self._echo: tuple[int, float] | None = None  # newest peer ping: (seq, our wall arrival ms)
        self._offsets: deque[tuple[float, float]] = deque(maxlen=OFFSET_WINDOW)
        self._seen: deque[int] = deque(maxlen=512)

    def make_ping(self) -> bytes:
        seq = self._next_seq
        self._next_seq += 1
        wall = now_wall_ms()
        self._sent[seq] = (now_mono_ms(), wall)
        if len(self._sent) > 4096:
            # Unanswered pings beyond this are never going to be matched.
            for old in sorted(self._sent)[: len(self._sent) - 4096]:
                del self._sent[old]
        echo_seq, echo_at = self._echo if self._echo is not None else (NO_ECHO, 0.0)
        self.totals.sent += 1
        self.interval.sent += 1
        return _HEAD.pack(MAGIC, seq, wall, echo_seq, echo_at) + _PAD

    def receive(self, data: bytes) -> None:
        t4_mono = now_mono_ms()
        t4_wall = now_wall_ms()
        if len(data) != PING_BYTES or data[:4] != MAGIC:
            self.totals.malformed += 1
            return
        _, seq, t3_wall, echo_seq, t2_wall = _HEAD.unpack_from(data)
        self._count(seq)
        self._echo = (seq, t4_wall)
        if echo_seq == NO_ECHO:
            return
        sent = self._sent.pop(echo_seq, None)
        if sent is None:
            return
        t1_mono, t1_wall = sent
        hold = t3_wall - t2_wall
        rtt = (t4_mono - t1_mono) - max(hold, 0.0)
        if rtt < 0:
            return
        self.interval.rtt_ms.append(rtt)
        self.rtt_all.append(rtt)
        self.totals.rtts += 1
        self._offsets.append((rtt, ((t2_wall - t1_wall) + (t3_wall - t4_wall)) / 2))
        best = min(self._offsets)
        self.offset_error_ms, self.offset_ms = best[0] / 2, best[1]

    def _count(self, seq: int) -> None:
        t = self.totals
        iv = self.interval
        if t.highest_seq is None:
            t.first_seq = t.highest_seq = seq
        elif seq <= t.highest_seq:
            if seq in self._seen:
                t.duplicates += 1
                return
            # Unordered channel: a ping we had counted lost arrived late.
            t.lost -= 1
            iv.lost -= 1
        else:
            gap = seq - t.highest_seq - 1
            t.lost += gap
            iv.lost += gap
            t.highest_seq = seq
        self._seen.append(seq)
        t.received += 1
        iv.received += 1

    def take_interval(self) -> PingInterval:
        iv = self.interval
        self.interval = PingInterval()
        return iv

    def account(self, peer_sent: int | None = None) -> dict[str, object]:
        t = self.totals
        rtts = np.array(self.rtt_all, dtype=np.float64)
        out: dict[str, object] = {"sent": t.sent, "received": t.received, "lost": t.lost,
                                  "rtts": t.rtts, "malformed": t.malformed}
        if t.first_seq is not None and t.highest_seq is not None:
            out["lossFraction"] = t.lost / max(1, t.highest_seq - t.first_seq + 1)
        if peer_sent is not None:
            out["peerSent"] = peer_sent
        if len(rtts):
            out.update(rttMedianMs=round(float(np.median(rtts)), 2), rttP95Ms=round(float(np.percentile(rtts, 95)), 2),
                       rttP99Ms=round(float(np.percentile(rtts, 99)), 2), rttMaxMs=round(float(rtts.max()), 2))
        if self.offset_ms is not None:
            out.update(clockOffsetMs=round(self.offset_ms, 2), clockOffsetErrorMs=round(self.offset_error_ms or 0, 2))
        return out
