"""UdpImpair plus what an access link's one-way trouble needs: jitter, bursty
loss and an outage of one direction only (tests/support/udp_impair.py's
outage cuts both). Placed in front of one participant's TURN server, its
"up" direction is that participant's uplink and nothing else.

- ``jitter_ms``: each packet's extra delay is drawn uniformly within
  ``delay_ms`` +- ``jitter_ms`` (seeded), and packets stay in order (a
  packet never leaves before the one ahead of it), as on a real queue.
- ``bursts``: Gilbert-Elliott loss: from the good state a packet starts a
  burst with probability ``p_enter``, a burst ends with ``p_exit``; every
  packet in a burst is dropped.
- ``cut``: drop everything one way.

Every drop is counted per (direction, SSRC) as in UdpImpair, and every
datagram is recorded (``trace``: time, direction, kind, client address), so a
test can check that media kept arriving from both ends in every phase
(``media_gaps``) and say why when it did not.
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path
from typing import NamedTuple

from tests.support.udp_impair import UdpImpair, rtp_ssrc

# Linux: the kernel's receive time of each datagram (struct timespec, CLOCK_REALTIME).
SO_TIMESTAMPNS = 35


class Arrival(NamedTuple):
    t_ms: float  # epoch ms when the relay read it
    direction: str
    kind: str  # packet_kind()
    client: str  # the TURN client's address, "ip:port"
    late_ms: float  # how long it waited in the kernel before the relay read it


# STUN/TURN message types a TURN client exchanges (RFC 5389, RFC 5766), for the trace.
STUN_TYPES = {0x0001: "binding", 0x0101: "binding-ok", 0x0003: "allocate", 0x0103: "allocate-ok",
              0x0113: "allocate-err", 0x0004: "refresh", 0x0104: "refresh-ok", 0x0114: "refresh-err",
              0x0008: "perm", 0x0108: "perm-ok", 0x0118: "perm-err", 0x0009: "chbind", 0x0109: "chbind-ok",
              0x0119: "chbind-err", 0x0016: "send-ind", 0x0017: "data-ind"}


def packet_kind(data: bytes) -> str:
    """What a datagram between a TURN client and server is: a TURN message ("allocate",
    "chbind-ok", "send-ind"...) or ChannelData ("ch4000:rtp", ":rtcp", ":stun0001" for an ICE
    check, ":dtls")."""
    if len(data) < 4:
        return "short"
    if 0x40 <= data[0] <= 0x7F:
        ch = int.from_bytes(data[:2], "big")
        p = data[4:]
        if p and p[0] >> 6 == 2:
            return f"ch{ch:x}:{'rtcp' if len(p) > 1 and 192 <= p[1] <= 223 else 'rtp'}"
        if p and p[0] < 4:
            return f"ch{ch:x}:stun{int.from_bytes(p[:2], 'big'):04x}"
        if p and 20 <= p[0] <= 63:
            return f"ch{ch:x}:dtls"
        return f"ch{ch:x}:other"
    if data[0] < 4:
        t = int.from_bytes(data[:2], "big")
        return STUN_TYPES.get(t, f"stun{t:04x}")
    return "other"


class UplinkImpair(UdpImpair):
    def __init__(self, upstream_port: int, *, seed: int) -> None:
        super().__init__(upstream_port, seed=seed)
        self.jitter_ms = {"up": 0.0, "down": 0.0}
        self.bursts: dict[str, tuple[float, float] | None] = {"up": None, "down": None}
        self.cut = {"up": False, "down": False}
        self._in_burst = {"up": False, "down": False}
        self._last_due = {"up": 0.0, "down": 0.0}
        # Every datagram that reached the relay, before any drop. Enough to tell a dead call
        # from an impaired one, and to see whether the relay itself (starved of CPU) held
        # packets that it should have passed at once.
        self.trace: list[Arrival] = []
        self._kernel_ms = 0.0
        self.listen.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)

    def configure(self, direction: str, *, jitter_ms: float | None = None,
                  bursts: tuple[float, float] | None | bool = False, cut: bool | None = None) -> float:
        """Change the extras of one direction; returns the epoch-ms time it took effect."""
        with self.lock:
            if jitter_ms is not None:
                self.jitter_ms[direction] = jitter_ms
            if bursts is not False:
                self.bursts[direction] = bursts  # type: ignore[assignment]
                self._in_burst[direction] = False
            if cut is not None:
                self.cut[direction] = cut
            return self._mark(f"{direction}: jitter {self.jitter_ms[direction]} ms, bursts "
                              f"{self.bursts[direction]}, cut {self.cut[direction]}")

    def media_gaps(self, direction: str, start_ms: float, end_ms: float,
                   longest_ms: float) -> list[tuple[float, float]]:
        """Spans of [start_ms, end_ms] longer than ``longest_ms`` in which no RTP reached the relay
        that way. Arrivals are recorded before any drop or cut, so a gap means the sender stopped
        sending or its path outside the relay broke: the call, not the impairment."""
        with self.lock:
            times = [a.t_ms for a in self.trace
                     if a.direction == direction and a.kind.endswith(":rtp") and start_ms <= a.t_ms <= end_ms]
        edges = [start_ms, *times, end_ms]
        return [(a, b) for a, b in zip(edges, edges[1:], strict=False) if b - a > longest_ms]

    def write_trace(self, path: Path) -> None:
        with self.lock:
            rows = list(self.trace)
        path.write_text("".join(f"{a.t_ms:.1f}\t{a.direction}\t{a.kind}\t{a.client}\t{a.late_ms:.1f}\n" for a in rows))

    def silences(self, min_ms: float) -> list[tuple[float, float, float]]:
        """Spans longer than ``min_ms`` in which no datagram at all reached the relay, either way,
        with how long the first one after it had waited in the kernel. The two ways carry two
        independent senders (the client's page; the other page through the TURN server), so a
        silence of both with a prompt relay means the browser itself stopped sending (starved of
        CPU, say); a long wait means the relay was the one stalled."""
        with self.lock:
            rows = list(self.trace)
        return [(a.t_ms, b.t_ms, b.late_ms) for a, b in zip(rows, rows[1:], strict=False) if b.t_ms - a.t_ms > min_ms]

    def held(self, direction: str, start_ms: float, end_ms: float) -> float:
        """The longest a datagram that way waited in the kernel for the relay to read it (ms)."""
        with self.lock:
            return max((a.late_ms for a in self.trace if a.direction == direction and start_ms <= a.t_ms <= end_ms),
                       default=0.0)

    def _recv(self, sock: socket.socket) -> tuple[bytes, tuple[str, int]]:
        data, anc, _, addr = sock.recvmsg(65535, 64)
        now = time.time() * 1000
        self._kernel_ms = now
        for level, kind, raw in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= 16:
                sec, nsec = struct.unpack_from("qq", raw)
                self._kernel_ms = sec * 1000 + nsec / 1e6
        return data, addr

    def _upstream_for(self, client: tuple[str, int]) -> socket.socket:
        known = client in self._clients
        s = super()._upstream_for(client)
        if not known:
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        return s

    def _burst(self, direction: str) -> bool:
        ge = self.bursts[direction]
        if ge is None:
            return False
        p_enter, p_exit = ge
        if self._in_burst[direction]:
            self._in_burst[direction] = self.rng.random() >= p_exit
        else:
            self._in_burst[direction] = self.rng.random() < p_enter
        return self._in_burst[direction]

    def _route(self, direction: str, data: bytes, sock: socket.socket, addr: tuple[str, int]) -> None:
        ssrc = rtp_ssrc(data)
        with self.lock:
            client = addr if direction == "down" else self._owner.get(sock, addr)
            now_ms = time.time() * 1000
            self.trace.append(Arrival(now_ms, direction, packet_kind(data), f"{client[0]}:{client[1]}",
                                      max(now_ms - self._kernel_ms, 0.0)))
            d = self.dirs[direction]
            drop = self.outage or self.cut[direction] or self._burst(direction) or self._decide_drop(d, ssrc)
            jitter = self.jitter_ms[direction]
            delay = (d.delay_ms + (self.rng.uniform(-jitter, jitter) if jitter else 0.0)) / 1000
            if ssrc is not None:
                self.rtp[(direction, ssrc)][1 if drop else 0] += 1
            if drop:
                d.dropped += 1
                return
            d.forwarded += 1
        now = time.monotonic()
        if delay <= 0 and self._last_due[direction] <= now:
            self._send(sock, data, addr)
            return
        due = max(now + max(delay, 0.0), self._last_due[direction] + 1e-6)
        self._last_due[direction] = due
        self._enqueue(due, sock, data, addr, now, direction)
