"""Accounting for the received audio pilot, 20 ms block by block
(docs/probe.md, "Audio").

Blocks are placed on the sender's media clock (the RTP timestamp of the
audio they arrived in); whether a block was heard is decided by its content
alone: its tones must spell the sequence number due at that place. A block
is a gap when no audio covered it (lost), when its tones do not read
(concealed or damaged), or when it arrived later than a player would have
waited for it (late).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from media import pilot
from media.probe.video_meter import RollingMin

SYNC_BLOCKS = 25  # contiguous audio needed to find the block alignment
RESYNC_AFTER = 10  # unreadable blocks in a row (with audio present) before realigning
BLOCK_MS = 1000.0 * pilot.BLOCK / pilot.RATE


@dataclass(frozen=True)
class Dropout:
    start_ms: float
    end_ms: float
    blocks: int
    # Of the blocks: no audio at all (the network lost the packets), audio whose tones
    # were wrong (a decoder recovering after a loss, a sender's glitch), or too late.
    missing: int = 0
    unreadable: int = 0
    late: int = 0

    @property
    def duration_ms(self) -> float:
        return self.blocks * BLOCK_MS


@dataclass
class AudioInterval:
    expected: int = 0
    heard: int = 0
    missing: int = 0
    unreadable: int = 0
    late: int = 0
    dropouts_started: int = 0
    dropouts: list[Dropout] = field(default_factory=list)

    @property
    def gap_blocks(self) -> int:
        return self.missing + self.unreadable + self.late


@dataclass
class AudioTotals:
    expected: int = 0
    heard: int = 0
    missing: int = 0
    unreadable: int = 0
    late: int = 0
    resyncs: int = 0

    @property
    def gap_ms(self) -> float:
        return (self.missing + self.unreadable + self.late) * BLOCK_MS


class AudioMeter:
    """Feed it decoded mono audio with its media-clock position."""

    def __init__(self, late_ms: float = 200.0, rate: int = pilot.RATE) -> None:
        if rate != pilot.RATE:
            raise ValueError("the pilot is read at 48 kHz")
        self.late_ms = late_ms
        self.totals = AudioTotals()
        self.interval = AudioInterval()
        self.jitter_ms = 0.0
        self.offset: int | None = None  # block boundaries sit at ts = k * BLOCK + offset
        self.seq0: int | None = None  # pilot number of block 0, mod PERIOD
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_ts = 0  # media-clock position of _buf[0]
        self._buf_arrival: list[tuple[int, float]] = []  # (ts where a chunk starts, arrival ms)
        self._next_block: int | None = None
        self._first_block: int | None = None
        self._min_transit = RollingMin()
        self._last_transit: float | None = None
        self._bad_run = 0
        # The dropout under way: its first block, and its blocks by verdict.
        self._open: tuple[int, dict[str, int]] | None = None
        self._wall_base: float | None = None  # wall ms of block 0 at the fastest transit
        # Media-clock spans [start, end) of audio that arrived while the reader had lost the
        # pilot's alignment: blocks there are judged once it is found again, and audio that
        # arrived but could not be read is unreadable, not missing (the network delivered it).
        self._unsynced_audio: list[list[int]] = []
        self._lost_offset: int | None = None

    # -- input -------------------------------------------------------------

    def chunk(self, samples: NDArray[np.floating] | NDArray[np.int16], ts: int, arrival_ms: float) -> None:
        """Audio that arrived at ``arrival_ms``; ``ts`` is its first sample's
        position on the sender's 48 kHz media clock (unwrapped)."""
        data = samples.astype(np.float32) / 32768.0 if samples.dtype == np.int16 else samples.astype(np.float32)
        end = self._buf_ts + len(self._buf)
        transit = arrival_ms - ts * 1000.0 / pilot.RATE
        if self._last_transit is not None:
            self.jitter_ms += (abs(transit - self._last_transit) - self.jitter_ms) / 16
        self._last_transit = transit
        if len(self._buf) and ts < end:
            return  # a duplicate or reordered chunk: its blocks were already judged
        if len(self._buf) == 0 or ts > end:
            # A hole in the media clock: what lies across it cannot be read.
            self._buf = data
            self._buf_ts = ts
            self._buf_arrival = [(ts, arrival_ms)]
        else:
            self._buf = np.concatenate([self._buf, data])
            self._buf_arrival.append((ts, arrival_ms))
        if self.offset is None:
            if self._next_block is not None:  # lost after being in sync: remember what arrived
                spans = self._unsynced_audio
                if spans and spans[-1][1] == ts:
                    spans[-1][1] = ts + len(data)
                elif len(spans) < 10_000:
                    spans.append([ts, ts + len(data)])
            self._try_sync()
        if self.offset is not None:
            self._judge_blocks()

    def packet(self, ts: int, first_seq: int | None, blocks: int, arrival_ms: float) -> None:
        """A packet recognised by its exact bytes as the pilot's blocks
        ``first_seq``.. (None: not a pilot packet), covering ``blocks`` blocks
        from media-clock position ``ts``. Block boundaries are then the
        packet boundaries: the sender's encoder delay shifts sound, not bytes."""
        transit = arrival_ms - ts * 1000.0 / pilot.RATE
        if self._last_transit is not None:
            self.jitter_ms += (abs(transit - self._last_transit) - self.jitter_ms) / 16
        self._last_transit = transit
        if self.offset is None:
            if first_seq is None:
                return  # nothing to align on yet
            self.offset = ts % pilot.BLOCK
            k0 = (ts - self.offset) // pilot.BLOCK
            self.seq0 = (first_seq - k0) % pilot.PERIOD
            self._next_block = self._first_block = k0
        assert self.offset is not None and self.seq0 is not None and self._next_block is not None
        k0 = (ts - self.offset) // pilot.BLOCK
        if k0 < self._next_block:
            return  # a duplicate or reordered packet: its blocks were already judged
        for k in range(self._next_block, k0):
            self._verdict(k, "missing", None)
        for j in range(blocks):
            k = k0 + j
            if first_seq is None or (first_seq + j) % pilot.PERIOD != (self.seq0 + k) % pilot.PERIOD:
                self._verdict(k, "unreadable", None)
            else:
                self._verdict(k, "heard", arrival_ms)
        self._next_block = k0 + blocks

    # -- alignment ---------------------------------------------------------

    def _try_sync(self) -> None:
        if len(self._buf) < SYNC_BLOCKS * pilot.BLOCK:
            return
        found = pilot.find_alignment(self._buf)
        if found is None:
            self._keep_newest()
            return
        offset = (self._buf_ts + found[0]) % pilot.BLOCK
        if self._lost_offset is not None:
            # Found again after losing it: the same boundaries can come back as an offset a
            # block's length away (760 for 0), which would renumber every block by one and
            # count one twice. Keep the numbering: take the one nearest the old offset.
            half = pilot.BLOCK // 2
            offset = self._lost_offset + (offset - self._lost_offset + half) % pilot.BLOCK - half
        first = -((offset - self._buf_ts) // pilot.BLOCK)  # first block starting inside the buffer
        starts = [first + i for i in range(len(self._buf) // pilot.BLOCK - 1)]
        wins = [self._window(k, offset) for k in starts]
        seqs = pilot.read_windows(np.stack([w for w in wins if w is not None]))
        votes = Counter(int((s - k) % pilot.PERIOD) for s, k in zip(seqs, starts, strict=False) if s >= 0)
        # Most blocks must agree on the numbering: tones that read but do not count up
        # (concealment repeating a stray block, damaged audio) are no alignment.
        if not votes or votes.most_common(1)[0][1] < len(starts) // 2:
            self._keep_newest()
            return
        self.offset = offset
        self._lost_offset = None
        self.seq0 = votes.most_common(1)[0][0]
        if self._next_block is None:
            self._next_block = first
            self._first_block = first
        self._bad_run = 0

    def _keep_newest(self) -> None:
        """No alignment yet: keep the newest audio only, and try again with more."""
        self._drop_before(self._buf_ts + len(self._buf) - (SYNC_BLOCKS - 5) * pilot.BLOCK)

    def _window(self, k: int, offset: int) -> NDArray[np.float32] | None:
        start = k * pilot.BLOCK + offset + (pilot.BLOCK - pilot.WINDOW) // 2 - self._buf_ts
        if start < 0 or start + pilot.WINDOW > len(self._buf):
            return None
        return self._buf[start : start + pilot.WINDOW]

    def _arrived_unsynced(self, k: int, offset: int) -> bool:
        lo = k * pilot.BLOCK + offset + (pilot.BLOCK - pilot.WINDOW) // 2
        hi = lo + pilot.WINDOW
        return any(a < hi and lo < b for a, b in self._unsynced_audio)

    def _drop_before(self, ts: int) -> None:
        cut = ts - self._buf_ts
        if cut <= 0:
            return
        self._buf = self._buf[cut:]
        self._buf_ts = ts
        self._buf_arrival = [(t, a) for t, a in self._buf_arrival if t >= ts] or self._buf_arrival[-1:]

    def _arrival_of(self, ts: int) -> float:
        arrival = self._buf_arrival[0][1]
        for start, when in self._buf_arrival:
            if start > ts:
                break
            arrival = when
        return arrival

    # -- judging -----------------------------------------------------------

    def _judge_blocks(self) -> None:
        assert self.offset is not None and self.seq0 is not None and self._next_block is not None
        offset = self.offset
        k = self._next_block
        # Blocks wholly before the buffer had no audio (lost), unless audio covering their
        # read window arrived while the alignment was being found again (unreadable).
        first_here = -((offset + (pilot.BLOCK - pilot.WINDOW) // 2 - self._buf_ts) // pilot.BLOCK)
        while k < first_here:
            self._verdict(k, "unreadable" if self._arrived_unsynced(k, offset) else "missing", None)
            k += 1
        self._unsynced_audio.clear()
        ready: list[int] = []
        windows = []
        while True:
            w = self._window(k + len(ready), offset)
            if w is None:
                break
            ready.append(k + len(ready))
            windows.append(w)
        if ready:
            seqs = pilot.read_windows(np.stack(windows))
            for blk, s in zip(ready, seqs, strict=True):
                expected = (self.seq0 + blk) % pilot.PERIOD
                if s != expected:
                    self._verdict(blk, "unreadable", None)
                    continue
                start_ts = blk * pilot.BLOCK + offset
                self._verdict(blk, "heard", self._arrival_of(start_ts + pilot.BLOCK - 1))
            k = ready[-1] + 1
        self._next_block = k
        self._drop_before(k * pilot.BLOCK + offset)
        if self._bad_run >= RESYNC_AFTER:
            self.totals.resyncs += 1
            if len(self._buf):  # audio not yet judged: it arrived
                self._unsynced_audio.append([self._buf_ts, self._buf_ts + len(self._buf)])
            self._lost_offset = self.offset
            self.offset = None
            self.seq0 = None
            self._bad_run = 0

    def _verdict(self, k: int, kind: str, arrival_ms: float | None) -> None:
        iv = self.interval
        t = self.totals
        iv.expected += 1
        t.expected += 1
        if kind == "heard" and arrival_ms is not None:
            send_rel = k * BLOCK_MS
            transit = arrival_ms - send_rel
            floor = self._min_transit.add(arrival_ms, transit)
            # Block k would have arrived at floor + k * 20 ms on the fastest path.
            self._wall_base = floor
            if transit - floor > self.late_ms:
                kind = "late"
        if kind == "heard":
            iv.heard += 1
            t.heard += 1
            self._bad_run = 0
            self._close_dropout(k)
            return
        if kind == "missing":
            iv.missing += 1
            t.missing += 1
        elif kind == "unreadable":
            iv.unreadable += 1
            t.unreadable += 1
            self._bad_run += 1
        else:
            iv.late += 1
            t.late += 1
        if self._open is None:
            self._open = (k, {"missing": 0, "unreadable": 0, "late": 0})
            iv.dropouts_started += 1
        self._open[1][kind] += 1

    def _close_dropout(self, k: int) -> None:
        if self._open is None:
            return
        first, kinds = self._open
        count = sum(kinds.values())
        self._open = None
        base = self._wall_base or 0.0
        self.interval.dropouts.append(
            Dropout(start_ms=base + first * BLOCK_MS, end_ms=base + (first + count) * BLOCK_MS, blocks=count,
                    **kinds)
        )

    def take_interval(self) -> AudioInterval:
        iv = self.interval
        self.interval = AudioInterval()
        return iv

    def account(self) -> dict[str, object]:
        t = self.totals
        return {"blocks": t.expected, "heard": t.heard, "missing": t.missing, "unreadable": t.unreadable,
                "late": t.late, "gapMs": round(t.gap_ms, 1), "resyncs": t.resyncs,
                "synced": self.offset is not None}
