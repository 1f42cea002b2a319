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
- ``outage``: drop everything both ways (a scripted network cut), or one
  direction only (``set_outage(True, "down")``).
- ``burst``: Gilbert-Elliott loss (a two-state Markov chain per direction,
  stepped per RTP packet): random, bursty, and not spread evenly.
- ``jitter_ms``: each packet's delay is ``delay_ms`` plus a uniform draw in
  [0, jitter_ms), kept in order (a packet never overtakes the one before).

Ground truth is counted, not assumed: SRTP leaves RTP headers in clear and
TURN ChannelData frames and Send/Data indications are easy to unwrap, so
the relay counts forwarded and dropped RTP packets per (direction, SSRC),
and the wall-clock times of every change of settings. With ``record=True`` it also keeps every
datagram's fate as a ``Crossing`` (arrival and send times, what it carries,
RTP header fields in clear) in ``crossings``; ``packets`` is the RTP part of
it, the per-packet truth the edge tests compare stored counts with.

A test can also set ``policy`` (its own seeded drop and extra-delay decisions
per datagram, e.g. tests/support/impair_plan.py), applied on top of the
settings above; its delays are kept in order too.
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
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol, Self, cast

# Linux: the kernel's receive time of each datagram (struct timespec, CLOCK_REALTIME).
SO_TIMESTAMPNS = 35


@dataclass
class GilbertElliott:
    """Two-state burst loss: ``p_gb`` / ``p_bg`` per packet to enter / leave the bad state."""

    p_gb: float
    p_bg: float
    loss_good: float = 0.0
    loss_bad: float = 0.5
    bad: bool = False

    def drop(self, rng: random.Random) -> bool:
        self.bad = (rng.random() >= self.p_bg) if self.bad else (rng.random() < self.p_gb)
        return rng.random() < (self.loss_bad if self.bad else self.loss_good)


@dataclass
class Packet:
    """One RTP packet's fate at the relay (the RTP view of a ``Crossing``)."""

    t_ms: float  # epoch ms it arrived at the relay
    direction: str
    ssrc: int
    seq: int
    dropped: bool
    payload_type: int
    indication: bool = False  # came in a TURN Send/Data indication, not ChannelData
    late_ms: float = 0.0  # how long it waited in the kernel before the relay read it (a busy machine)


@dataclass
class Crossing:
    """One datagram through the relay (times in epoch ms; ``t_out`` None until sent, or when dropped)."""

    direction: str
    t_in: float
    t_out: float | None
    size: int
    ssrc: int | None = None
    seq: int | None = None
    ts: int | None = None
    pt: int | None = None
    marker: bool = False
    kind: str = ""  # what it carries: rtp, rtcp, dtls, ice (STUN in a channel), turn (TURN control)
    dropped: bool = False
    indication: bool = False  # relayed in a TURN Send/Data indication, not ChannelData
    late_ms: float = 0.0  # how long it waited in the kernel before the relay read it


class Policy(Protocol):
    """A test's per-packet decisions: drop it? and extra delay (ms) beyond ``delay_ms``."""

    def decide(self, direction: str, t_ms: float, rtp: Crossing) -> tuple[bool, float]: ...


def datagram_kind(datagram: bytes) -> str:
    """What a datagram between a client and TURN carries (RFC 7983 demultiplexing)."""
    if not datagram:
        return ""
    if datagram[0] < 4:
        return "turn"  # STUN/TURN message to or from the TURN server itself
    if 0x40 <= datagram[0] <= 0x7F and len(datagram) > 4:
        b = datagram[4]
        if b < 4:
            return "ice"
        if 20 <= b <= 63:
            return "dtls"
        if 128 <= b <= 191:
            return "rtcp" if len(datagram) > 5 and 192 <= datagram[5] <= 223 else "rtp"
    return "other"


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
    jitter_ms: float = 0.0
    burst: GilbertElliott | None = None
    last_due: float = 0.0  # in-order delivery: no packet is due before the one ahead of it


SEND_INDICATION, DATA_INDICATION, DATA_ATTRIBUTE = 0x0016, 0x0017, 0x0013  # RFC 5766


def peer_payload(datagram: bytes) -> bytes | None:
    """The datagram a TURN client exchanges with its peer: a ChannelData frame's
    payload, or the DATA attribute of a Send / Data indication (what a client
    sends before its channel is bound: the first packets of a call)."""
    if len(datagram) >= 4 and 0x40 <= datagram[0] <= 0x7F:
        (length,) = struct.unpack_from("!H", datagram, 2)
        return datagram[4 : 4 + length]
    if len(datagram) < 20:
        return None
    kind, length = struct.unpack_from("!HH", datagram, 0)
    if kind not in (SEND_INDICATION, DATA_INDICATION):
        return None
    pos, end = 20, min(len(datagram), 20 + length)
    while pos + 4 <= end:
        attr, size = struct.unpack_from("!HH", datagram, pos)
        if attr == DATA_ATTRIBUTE:
            return datagram[pos + 4 : pos + 4 + size]
        pos += 4 + (size + 3) // 4 * 4
    return None


def rtp_header(datagram: bytes) -> tuple[int, int, int, int, bool] | None:
    """(SSRC, sequence number, timestamp, payload type, marker) of an RTP
    packet a TURN client exchanges with its peer (``peer_payload``), else None."""
    payload = peer_payload(datagram)
    if payload is None or len(payload) < 12 or payload[0] >> 6 != 2:
        return None
    if 192 <= payload[1] <= 223:  # RTCP packet types 192-223 (RFC 5761)
        return None
    seq, ts, ssrc = struct.unpack_from("!HII", payload, 2)
    return int(ssrc), int(seq), int(ts), payload[1] & 0x7F, bool(payload[1] & 0x80)


def rtp_ssrc(datagram: bytes) -> int | None:
    """SSRC of an RTP packet a TURN client exchanges with its peer, else None."""
    h = rtp_header(datagram)
    return None if h is None else h[0]


class UdpImpair:
    """Relay 127.0.0.1:<port> -> ``upstream``; one upstream socket per client."""

    def __init__(self, upstream_port: int, *, seed: int = 20240501, record: bool = False) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.dirs = {"up": Direction(), "down": Direction()}
        self.outage = False
        self.outage_dirs: set[str] = set()
        self.outage_ssrcs: frozenset[int] = frozenset()
        self.crossings: list[Crossing] | None = [] if record else None
        self.policy: Policy | None = None
        # (direction, ssrc) -> [forwarded, dropped]
        self.rtp: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
        self.log: list[tuple[float, str]] = []  # (epoch ms, what changed)
        self.listen = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.listen.bind(("127.0.0.1", 0))
        self.listen.setblocking(False)
        self.listen.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._kernel_ms = 0.0  # the kernel's receive time of the datagram being routed
        self.port = int(self.listen.getsockname()[1])
        self._clients: dict[tuple[str, int], socket.socket] = {}
        self._owner: dict[socket.socket, tuple[str, int]] = {}
        self._queue: list[tuple[float, int, socket.socket, bytes, tuple[str, int], float, str,
                                Crossing | None]] = []
        self._n = 0
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.listen, selectors.EVENT_READ)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="udp-impair", daemon=True)

    # -- control (any thread) ---------------------------------------------

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for s in [self.listen, *self._clients.values()]:
            s.close()
        self._sel.close()

    def set(self, direction: str, *, delay_ms: float | None = None, loss: float | None = None,
            rtp_only: bool | None = None, jitter_ms: float | None = None,
            burst: GilbertElliott | None | bool = False) -> float:
        """Change one direction's impairment; returns the epoch-ms time it took effect.
        ``burst``: a Gilbert-Elliott model, None to remove it, False to leave it."""
        with self.lock:
            d = self.dirs[direction]
            if delay_ms is not None:
                d.delay_ms = delay_ms
                d.delayed, d.delay_sum_s = 0, 0.0
            if jitter_ms is not None:
                d.jitter_ms = jitter_ms
            if burst is not False:
                d.burst = burst if isinstance(burst, GilbertElliott) else None
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

    def set_outage(self, on: bool, direction: str | None = None, ssrcs: Iterable[int] | None = None) -> float:
        """Cut (or restore) both directions, or only ``direction``, or only the
        RTP of ``ssrcs`` (one sender's media: one direction of a call, while
        its RTCP and ICE go on)."""
        with self.lock:
            if ssrcs is not None:
                self.outage_ssrcs = frozenset(ssrcs) if on else frozenset()
            elif direction is None:
                self.outage = on
            elif on:
                self.outage_dirs.add(direction)
            else:
                self.outage_dirs.discard(direction)
            return self._mark(f"outage {direction or 'both'} " + ("start" if on else "end"))

    def clients(self) -> frozenset[str]:
        """Addresses (without ports) that clients reached the relay from."""
        with self.lock:
            return frozenset(host for host, _ in self._clients)

    @property
    def packets(self) -> list[Packet]:
        """The RTP packets of ``crossings`` (``record=True``), in arrival order."""
        with self.lock:
            return [Packet(c.t_in, c.direction, c.ssrc, c.seq, c.dropped, c.pt, c.indication, c.late_ms)
                    for c in self.crossings or []
                    if c.ssrc is not None and c.seq is not None and c.pt is not None]

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
        if d.rtp_only and ssrc is None:
            return False
        if d.burst is not None and d.burst.drop(self.rng):
            return True
        if d.loss <= 0:
            return False
        block = d.blocks.setdefault(ssrc, [])
        if not block:
            n = max(1, round(1 / d.loss))
            victim = self.rng.randrange(n)
            block.extend(i == victim for i in range(n))
        return block.pop()

    def _route(self, direction: str, data: bytes, sock: socket.socket, addr: tuple[str, int]) -> None:
        header = rtp_header(data)
        ssrc = None if header is None else header[0]
        crossing: Crossing | None = None
        if self.crossings is not None or self.policy is not None:
            crossing = Crossing(direction, time.time() * 1000, None, len(data), kind=datagram_kind(data))
            crossing.late_ms = max(crossing.t_in - self._kernel_ms, 0.0)
            if header is not None:
                crossing.ssrc, crossing.seq, crossing.ts, crossing.pt, crossing.marker = header
                crossing.indication = not 0x40 <= data[0] <= 0x7F
        with self.lock:
            d = self.dirs[direction]
            drop = (self.outage or direction in self.outage_dirs or (ssrc is not None and ssrc in self.outage_ssrcs)
                    or self._decide_drop(d, ssrc))
            delay = d.delay_ms / 1000
            if d.jitter_ms > 0:
                delay += self.rng.random() * d.jitter_ms / 1000
            if crossing is not None and self.policy is not None and not drop:
                drop, extra_ms = self.policy.decide(direction, crossing.t_in, crossing)
                delay += extra_ms / 1000
            if ssrc is not None:
                self.rtp[(direction, ssrc)][1 if drop else 0] += 1
            if crossing is not None:
                crossing.dropped = drop
                if self.crossings is not None:
                    self.crossings.append(crossing)
            if drop:
                d.dropped += 1
                return
            d.forwarded += 1
            now = time.monotonic()
            due = now + delay
            if delay > 0 or d.last_due > now:
                due = max(due, d.last_due)  # kept in order
            d.last_due = due
        if due <= now:
            self._send(sock, data, addr)
            if crossing is not None:
                crossing.t_out = time.time() * 1000
            return
        self._enqueue(due, sock, data, addr, now, direction, crossing)

    def _enqueue(self, due: float, sock: socket.socket, data: bytes, addr: tuple[str, int], arrived: float,
                 direction: str, crossing: Crossing | None = None) -> None:
        """Hold a datagram until ``due`` (monotonic s); relay thread only."""
        self._n += 1
        heapq.heappush(self._queue, (due, self._n, sock, data, addr, arrived, direction, crossing))

    @staticmethod
    def _send(sock: socket.socket, data: bytes, addr: tuple[str, int]) -> None:
        try:
            sock.sendto(data, addr)
        except OSError:
            pass  # a full buffer or a vanished peer is a lost packet, as on a real network

    def _recv(self, sock: socket.socket) -> tuple[bytes, tuple[str, int]]:
        data, anc, _, addr = sock.recvmsg(65535, 64)
        self._kernel_ms = time.time() * 1000
        for level, kind, raw in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= 16:
                sec, nsec = struct.unpack_from("qq", raw)
                self._kernel_ms = sec * 1000 + nsec / 1e6
        return data, addr

    def _upstream_for(self, client: tuple[str, int]) -> socket.socket:
        s = self._clients.get(client)
        if s is None:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self._clients[client] = s
            self._owner[s] = client
            self._sel.register(s, selectors.EVENT_READ)
        return s

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            while self._queue and self._queue[0][0] <= now:
                _, _, sock, data, addr, arrived, direction, crossing = heapq.heappop(self._queue)
                self._send(sock, data, addr)
                if crossing is not None:
                    crossing.t_out = time.time() * 1000
                with self.lock:
                    d = self.dirs[direction]
                    d.delayed += 1
                    d.delay_sum_s += time.monotonic() - arrived
            timeout = 0.05 if not self._queue else max(0.0, min(0.05, self._queue[0][0] - now))
            for key, _ in self._sel.select(timeout):
                sock = cast(socket.socket, key.fileobj)
                for _ in range(64):
                    try:
                        data, addr = self._recv(sock)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    if sock is self.listen:
                        self._route("up", data, self._upstream_for(addr), self.upstream)
                    else:
                        self._route("down", data, self.listen, self._owner[sock])
