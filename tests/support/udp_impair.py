"""A UDP relay that delays and drops packets by known amounts, in user space.

This kernel has no netem, so tests impair a real call here instead: the relay
listens where the TURN server appears to be and forwards to the real one
(tests/support/turn.py). With ``iceTransportPolicy: 'relay'`` on both peers,
each media packet crosses the relay twice: client -> TURN ("up") and
TURN -> client ("down"). Impairments are set per direction, so a test can
impair exactly one crossing per media path:

- ``delay_ms``: fixed extra delay; packets stay in order. Delay D on the
  "down" crossing adds D one way and 2D to a round trip between two peers.
- ``loss``: random loss, stratified so the realised rate is exact: of every
  ``round(1/loss)`` packets of one stream (an RTP SSRC, or all other traffic)
  crossing that way, one chosen at random is dropped. With ``rtp_only`` only
  RTP packets are dropped (STUN, DTLS and RTCP pass), which makes the imposed
  media loss exact per stream.
- ``outage``: drop everything both ways (a scripted network cut).

Ground truth is counted, not assumed: SRTP leaves RTP headers in clear and
TURN ChannelData frames are easy to unwrap, so the relay counts forwarded
and dropped RTP packets per (direction, SSRC), and the wall-clock times of
every change of settings.
"""

from __future__ import annotations

import heapq
import random
import selectors
import socket
import struct
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import cast


@dataclass
class Direction:
    delay_ms: float = 0.0
    loss: float = 0.0
    rtp_only: bool = False
    # Drop decisions of the current stratum, per stream (SSRC; None for non-RTP).
    blocks: dict[int | None, list[bool]] = field(default_factory=dict)
    forwarded: int = 0
    dropped: int = 0
    delayed: int = 0
    delay_sum_s: float = 0.0  # measured: time from arrival to the delayed send


def rtp_ssrc(datagram: bytes) -> int | None:
    """SSRC of an RTP packet carried in a TURN ChannelData frame, else None."""
    if len(datagram) < 16 or not 0x40 <= datagram[0] <= 0x7F:
        return None
    (length,) = struct.unpack_from("!H", datagram, 2)
    payload = datagram[4 : 4 + length]
    if len(payload) < 12 or payload[0] >> 6 != 2:
        return None
    if 192 <= payload[1] <= 223:  # RTCP packet types 192-223 (RFC 5761)
        return None
    (ssrc,) = struct.unpack_from("!I", payload, 8)
    return int(ssrc)


class UdpImpair:
    """Relay 127.0.0.1:<port> -> ``upstream``; one upstream socket per client."""

    def __init__(self, upstream_port: int, *, seed: int = 20240501) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.dirs = {"up": Direction(), "down": Direction()}
        self.outage = False
        # (direction, ssrc) -> [forwarded, dropped]
        self.rtp: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
        self.log: list[tuple[float, str]] = []  # (epoch ms, what changed)
        self.listen = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.listen.bind(("127.0.0.1", 0))
        self.listen.setblocking(False)
        self.port = int(self.listen.getsockname()[1])
        self._clients: dict[tuple[str, int], socket.socket] = {}
        self._owner: dict[socket.socket, tuple[str, int]] = {}
        self._queue: list[tuple[float, int, socket.socket, bytes, tuple[str, int], float, str]] = []
        self._n = 0
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.listen, selectors.EVENT_READ)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="udp-impair", daemon=True)

    # -- control (any thread) ---------------------------------------------

    def start(self) -> UdpImpair:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for s in [self.listen, *self._clients.values()]:
            s.close()
        self._sel.close()

    def set(self, direction: str, *, delay_ms: float | None = None, loss: float | None = None,
            rtp_only: bool | None = None) -> float:
        """Change one direction's impairment; returns the epoch-ms time it took effect."""
        with self.lock:
            d = self.dirs[direction]
            if delay_ms is not None:
                d.delay_ms = delay_ms
                d.delayed, d.delay_sum_s = 0, 0.0
            if rtp_only is not None:
                d.rtp_only = rtp_only
            if loss is not None:
                if not 0 <= loss < 1:
                    raise ValueError("loss must be in [0, 1)")
                d.loss = loss
                d.blocks = {}
            return self._mark(f"{direction}: delay {d.delay_ms} ms, loss {d.loss}")

    def measured_delay_ms(self, direction: str) -> float | None:
        """Mean extra delay actually applied since the delay was last set."""
        with self.lock:
            d = self.dirs[direction]
            return d.delay_sum_s / d.delayed * 1000 if d.delayed else None

    def set_outage(self, on: bool) -> float:
        with self.lock:
            self.outage = on
            return self._mark("outage " + ("start" if on else "end"))

    def snapshot(self) -> dict[tuple[str, int], tuple[int, int]]:
        """Per (direction, SSRC): (forwarded, dropped) RTP packets so far."""
        with self.lock:
            return {k: (v[0], v[1]) for k, v in self.rtp.items()}

    def _mark(self, what: str) -> float:
        t = time.time() * 1000
        self.log.append((t, what))
        return t

    # -- the relay thread -------------------------------------------------

    def _decide_drop(self, d: Direction, ssrc: int | None) -> bool:
        if d.loss <= 0 or (d.rtp_only and ssrc is None):
            return False
        block = d.blocks.setdefault(ssrc, [])
        if not block:
            n = max(1, round(1 / d.loss))
            victim = self.rng.randrange(n)
            block.extend(i == victim for i in range(n))
        return block.pop()

    def _route(self, direction: str, data: bytes, sock: socket.socket, addr: tuple[str, int]) -> None:
        ssrc = rtp_ssrc(data)
        with self.lock:
            d = self.dirs[direction]
            drop = self.outage or self._decide_drop(d, ssrc)
            delay = d.delay_ms / 1000
            if ssrc is not None:
                self.rtp[(direction, ssrc)][1 if drop else 0] += 1
            if drop:
                d.dropped += 1
                return
            d.forwarded += 1
        if delay <= 0:
            self._send(sock, data, addr)
            return
        self._n += 1
        now = time.monotonic()
        heapq.heappush(self._queue, (now + delay, self._n, sock, data, addr, now, direction))

    @staticmethod
    def _send(sock: socket.socket, data: bytes, addr: tuple[str, int]) -> None:
        try:
            sock.sendto(data, addr)
        except OSError:
            pass  # a full buffer or a vanished peer is a lost packet, as on a real network

    def _upstream_for(self, client: tuple[str, int]) -> socket.socket:
        s = self._clients.get(client)
        if s is None:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            self._clients[client] = s
            self._owner[s] = client
            self._sel.register(s, selectors.EVENT_READ)
        return s

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            while self._queue and self._queue[0][0] <= now:
                _, _, sock, data, addr, arrived, direction = heapq.heappop(self._queue)
                self._send(sock, data, addr)
                with self.lock:
                    d = self.dirs[direction]
                    d.delayed += 1
                    d.delay_sum_s += time.monotonic() - arrived
            timeout = 0.05 if not self._queue else max(0.0, min(0.05, self._queue[0][0] - now))
            for key, _ in self._sel.select(timeout):
                sock = cast(socket.socket, key.fileobj)
                for _ in range(64):
                    try:
                        data, addr = sock.recvfrom(65535)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    if sock is self.listen:
                        self._route("up", data, self._upstream_for(addr), self.upstream)
                    else:
                        self._route("down", data, self.listen, self._owner[sock])
