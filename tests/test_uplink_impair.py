"""The impairment relay's own record (tests/support/uplink_impair.py), which the
browser proofs rely on to tell a dead call from an impaired one: every datagram
is recorded on arrival, before any drop or cut, so a one-way cut shows as
dropped RTP while a sender that stops shows as a gap in arrivals.

Real UDP on 127.0.0.1: a socket stands in for the TURN client and another for
the TURN server (an echo, so the "down" direction carries traffic too).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.uplink_impair import UplinkImpair, packet_kind

SSRC = 0x1234ABCD


def channel_rtp(seq: int, payload_type: int = 111) -> bytes:
    rtp = struct.pack("!BBHII", 0x80, payload_type, seq, seq * 960, SSRC) + b"\0" * 40
    return struct.pack("!HH", 0x4000, len(rtp)) + rtp


@pytest.fixture
def echo() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(2048)
            except OSError:
                continue
            sock.sendto(data, addr)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    yield sock
    stop.set()
    t.join(2)
    sock.close()


def test_packet_kinds() -> None:
    allocate = struct.pack("!HHI", 0x0003, 0, 0x2112A442) + b"\1" * 12
    assert packet_kind(allocate) == "allocate"
    assert packet_kind(channel_rtp(1)) == "ch4000:rtp"
    assert packet_kind(channel_rtp(1, payload_type=200)) == "ch4000:rtcp"
    ice_check = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + b"\2" * 12
    assert packet_kind(struct.pack("!HH", 0x4001, len(ice_check)) + ice_check) == "ch4001:stun0001"


def test_a_cut_is_recorded_as_drops_and_a_silent_sender_as_a_gap(echo: socket.socket) -> None:
    relay = UplinkImpair(echo.getsockname()[1], seed=1).start()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    seq = 0

    def send(n: int) -> None:
        nonlocal seq
        for _ in range(n):
            seq += 1
            client.sendto(channel_rtp(seq), ("127.0.0.1", relay.port))
            time.sleep(0.02)

    try:
        start = time.time() * 1000
        send(10)
        cut_at = relay.configure("up", cut=True)
        send(60)  # longer than the gap threshold
        uncut_at = relay.configure("up", cut=False)
        send(10)
        silent_from = time.time() * 1000
        time.sleep(2.5)  # the sender stops: nothing reaches the relay either way
        silent_to = time.time() * 1000
        send(10)
        time.sleep(0.3)  # let the last datagrams and their echoes through
        end = time.time() * 1000
        up = relay.snapshot()[("up", SSRC)]
        assert up == (30, 60), up  # all 60 sent during the cut arrived and were dropped
        assert relay.snapshot()[("down", SSRC)] == (30, 0)
        up_gaps, down_gaps = (relay.media_gaps(d, start, end, 1000.0) for d in ("up", "down"))
        mid_cut = (cut_at + uncut_at) / 2
        # Up: the silence is a gap, the cut is not (its packets arrived and were dropped).
        # Down: the echo heard nothing during the cut either, so both are gaps there.
        assert [g for g in up_gaps if g[0] <= silent_from + 100 and g[1] >= silent_to - 100], up_gaps
        assert not [g for g in up_gaps if g[0] <= mid_cut <= g[1]], up_gaps
        assert [g for g in down_gaps if g[0] <= mid_cut <= g[1]], down_gaps
        assert [g for g in down_gaps if g[0] <= silent_from + 100 and g[1] >= silent_to - 100], down_gaps
        kinds = {(a.direction, a.kind, a.client) for a in relay.trace}
        assert kinds == {("up", "ch4000:rtp", f"127.0.0.1:{client.getsockname()[1]}"),
                         ("down", "ch4000:rtp", f"127.0.0.1:{client.getsockname()[1]}")}, kinds
    finally:
        relay.stop()
        client.close()
