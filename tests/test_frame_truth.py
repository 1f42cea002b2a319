"""The browser ground truth's reading of a relay record (tests/support/frame_truth.py),
on records built here with known fates, so the truth itself is tested."""

from __future__ import annotations

import struct

from tests.support import frame_truth as ft
from tests.support.udp_impair import Crossing, datagram_kind, rtp_header

TICKS = 18_000  # 5 fps


def packet(seq: int, frame: int, t_in: float, t_out: float | None, size: int = 100) -> Crossing:
    return Crossing("up", t_in, t_out, size, ssrc=7, seq=seq, ts=1000 + frame * TICKS, pt=96, kind="rtp")


def test_complete_late_and_newest_wins() -> None:
    rec = [
        packet(1, 0, 0, 1),
        packet(2, 1, 200, 201), packet(3, 1, 200, None),  # frame 1: a packet dropped ...
        packet(4, 2, 400, 401),
        packet(3, 1, 500, 501),  # ... resent after frame 2 completed: too late to show
        packet(5, 3, 600, None),  # frame 3: never complete
        packet(6, 4, 800, 801),
    ]
    fs = ft.frames(rec, "up", 7)
    assert ft.number(fs, TICKS, sent=5) is None and [f.n for f in fs] == [0, 1, 2, 3, 4]
    assert [f.complete_ms for f in fs] == [1, 501, 401, None, 801]
    assert [f.shown for f in fs] == [True, False, True, False, True]


def test_spoiled_until_the_next_key_frame() -> None:
    sizes = [400, 100, 100, 100, 100, 400, 100]  # key frames: 0 and 5
    rec = [packet(n + 1, n, n * 200.0, None if n == 2 else n * 200.0 + 1, size=s) for n, s in enumerate(sizes)]
    fs = ft.frames(rec, "up", 7)
    ft.number(fs, TICKS, sent=7)
    assert ft.mark_key_frames(fs) == 2
    ft.mark_spoiled(fs)
    # Frame 2 lost: 3 and 4 reference it, 5 is a key frame, 6 is fine again.
    assert [(f.shown, f.spoiled) for f in fs] == [(True, False), (True, False), (False, False), (True, True),
                                                   (True, True), (True, False), (True, False)]


def test_numbering_from_timestamps_refuses_collisions() -> None:
    rec = [packet(1, 0, 0, 1), packet(2, 1, 200, 201), packet(3, 3, 600, 601)]  # frame 2 never encoded
    fs = ft.frames(rec, "up", 7)
    assert ft.number(fs, TICKS, sent=4, encoded=3) is None and [f.n for f in fs] == [0, 1, 3]
    fs[2].ts = fs[1].ts + TICKS // 3  # a timestamp that would make two frames one
    assert ft.number(fs, TICKS, sent=4, encoded=3) is not None


def test_numbering_from_timestamps_allows_a_late_timer() -> None:
    """A page timer fires late, never early: a frame painted 0.6 periods late is
    still its own frame, and a late first frame does not shift the others."""
    def run(late: dict[int, float], missing: int, sent: int = 8) -> list[int]:
        rec, seq = [], 0
        for k in range(sent):
            if k == missing:
                continue
            seq += 1
            pkt = packet(seq, k, 200 * k, 200 * k + 1)
            pkt.ts = 1000 + round((k + late.get(k, 0.0)) * TICKS)  # painted late: stamped late
            rec.append(pkt)
        fs = ft.frames(rec, "up", 7)
        assert ft.number(fs, TICKS, sent=sent, encoded=sent - 1) is None
        return [f.n for f in fs]

    assert run({3: 0.6}, missing=5) == [0, 1, 2, 3, 4, 6, 7]
    assert run({0: 0.6, 4: 0.3}, missing=2) == [0, 1, 3, 4, 5, 6, 7]
    assert run({6: 0.02, 1: -0.03}, missing=7) == [0, 1, 2, 3, 4, 5, 6]


def test_freezes_certain_and_borderline() -> None:
    times = [i * 200.0 for i in range(10)] + [1800 + 600, 2400 + 200, 2600 + 200, 2800 + 1000, 3800 + 200]
    certain, borderline = ft.freezes(times, band_ms=20)
    assert certain == [(2800.0, 3800.0)]  # 1 s against a 600 ms limit
    assert borderline == [(1800.0, 2400.0)]  # exactly 3 x the mean frame time
    assert ft.f1(certain, borderline, [(1800.0, 2400.0), (2800.0, 3800.0)]) == 1.0  # a borderline find is no error
    assert ft.f1(certain, borderline, []) == 0.0


def test_datagram_kinds() -> None:
    channel = b"\x40\x00\x00\x10"
    assert datagram_kind(b"\x00\x01\x00\x00") == "turn"
    assert datagram_kind(channel + b"\x00\x01") == "ice"
    assert datagram_kind(channel + b"\x17\xfe") == "dtls"
    assert datagram_kind(channel + b"\x80\x60") == "rtp"
    assert datagram_kind(channel + b"\x80\xc9") == "rtcp"


def test_rtp_found_in_channel_data_and_in_indications() -> None:
    # Before its channel is bound a TURN client sends (and receives) its peer's
    # datagrams in Send / Data indications: the first packets of a call.
    rtp = struct.pack("!BBHII", 0x80, 0xE0, 513, 90_000, 0xABCDEF01) + b"payload"
    want = (0xABCDEF01, 513, 90_000, 96, True)
    assert rtp_header(struct.pack("!HH", 0x4000, len(rtp)) + rtp) == want
    peer = struct.pack("!HH", 0x0012, 8) + bytes(8)  # XOR-PEER-ADDRESS, before DATA
    data = struct.pack("!HH", 0x0013, len(rtp)) + rtp + bytes(-len(rtp) % 4)
    for kind in (0x0016, 0x0017):
        body = peer + data
        msg = struct.pack("!HHI", kind, len(body), 0x2112A442) + bytes(12) + body
        assert rtp_header(msg) == want
    binding = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + bytes(12)
    assert rtp_header(binding) is None
