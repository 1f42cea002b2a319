"""What the relay's per-packet record says each receiver could show.

Frames are RTP timestamps of one video SSRC. A frame is complete once some
copy of each of its packets (originals and same-seq retransmissions) has
left the relay; a receiver hands frames out newest-wins (a frame completing
after a newer one is never shown: media/probe/receiver.py, and Chromium's
frame buffer). With inter frames, a frame handed out after a loss whose
reference chain is broken is spoiled until the next key frame.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from media.probe.receiver import Unwrapper
from tests.support.udp_impair import Crossing


@dataclass
class RelayFrame:
    ts: int
    first_in_ms: float
    seqs: dict[int, list[Crossing]] = field(default_factory=dict)
    n: int = -1  # sender's frame number
    shown: bool = False
    spoiled: bool = False
    key: bool = False

    @property
    def size(self) -> int:
        return sum(c[0].size for c in self.seqs.values())

    @property
    def complete_ms(self) -> float | None:
        outs = []
        for copies in self.seqs.values():
            sent = [c.t_out for c in copies if c.t_out is not None]
            if not sent:
                return None
            outs.append(min(sent))
        return max(outs) if outs else None

    @property
    def begin(self) -> int:
        return min(self.seqs)

    @property
    def end(self) -> int:
        return max(self.seqs)


def video_ssrc(record: list[Crossing], direction: str, audio_pt: int) -> int:
    counts: dict[int, int] = defaultdict(int)
    for c in record:
        if c.direction == direction and c.ssrc is not None and c.pt != audio_pt:
            counts[c.ssrc] += 1
    return max(counts, key=lambda s: counts[s])


def frames(record: list[Crossing], direction: str, ssrc: int) -> list[RelayFrame]:
    seq_u, ts_u = Unwrapper(16), Unwrapper(32)
    by_ts: dict[int, RelayFrame] = {}
    for c in record:
        if c.direction != direction or c.ssrc != ssrc or c.seq is None or c.ts is None:
            continue
        ts, seq = ts_u(c.ts), seq_u(c.seq)
        f = by_ts.setdefault(ts, RelayFrame(ts, c.t_in))
        f.seqs.setdefault(seq, []).append(c)
    out = sorted(by_ts.values(), key=lambda f: f.ts)
    # Newest-wins: shown when complete before every later frame completes.
    later = float("inf")
    for f in reversed(out):
        done = f.complete_ms
        f.shown = done is not None and done < later
        if done is not None:
            later = min(later, done)
    return out


def number(fs: list[RelayFrame], ticks_per_frame: float, sent: int, encoded: int | None = None) -> str | None:
    """Sender frame numbers (frame 0 first); why they cannot be told, or None.
    When every frame the sender made (``sent``) was encoded and reached the
    relay they are simply in order. Otherwise (an encoder that dropped
    frames) from RTP timestamps. The page paints frame k on a timer due at
    t0 + k periods, and a timer only ever fires late, so a frame's timestamp
    lies at or after its due time: its number is the whole periods between
    the due time of frame 0 and its timestamp. Frame 0's due time is where
    the frames that were not late lie (the most common phase). Two frames
    given the same number mean the sender was late by more than a period and
    the mapping is ambiguous."""
    if len(fs) == sent and (encoded is None or encoded == sent):
        for i, f in enumerate(fs):
            f.n = i
        return None
    if not fs:
        return None
    phases = [((f.ts - fs[0].ts) / ticks_per_frame) % 1.0 for f in fs]

    def near(p: float) -> int:
        return sum(1 for q in phases if min(abs(q - p), 1 - abs(q - p)) <= 0.05)

    late0 = (-max(phases, key=near)) % 1.0  # how late frame 0 was, in periods
    if late0 > 0.9:
        late0 -= 1.0  # frame 0 on time, a little before the most common phase
    due0 = fs[0].ts - late0 * ticks_per_frame
    for f in fs:
        f.n = math.floor((f.ts - due0) / ticks_per_frame + 0.1)
    ns = [f.n for f in fs]
    if any(b <= a for a, b in zip(ns, ns[1:], strict=False)) or (ns and (ns[0] < 0 or ns[-1] >= sent)):
        return f"frame numbers from RTP timestamps collide or exceed the {sent} frames sent"
    return None


def mark_key_frames(fs: list[RelayFrame], expected: int | None = None, factor: float = 2.0) -> int:
    """Key frames by size (SRTP hides the VP8 header): much larger than the median
    frame. The test checks the count against the encoder's keyFramesEncoded
    (``expected``). An inter frame can be large too (173 bytes among key frames of
    186-190, GT seed 1943575046): of more candidates than ``expected``, the largest."""
    sizes = sorted(f.size for f in fs)
    median = sizes[len(sizes) // 2]
    candidates = sorted((f for f in fs if f.size > factor * median), key=lambda f: f.size, reverse=True)
    keys = {id(f) for f in candidates[:expected]}  # [:None]: all of them
    for f in fs:
        f.key = id(f) in keys
    return len(keys)


def mark_spoiled(fs: list[RelayFrame]) -> None:
    """Replays the receiver's rule: after packets lost between two frames handed
    out, inter frames are spoiled until a key frame."""
    broken, last_end = False, None
    for f in fs:
        if not f.shown:
            continue
        if last_end is not None and f.begin != last_end + 1:
            broken = True
        last_end = f.end
        if f.key:
            broken = False
        elif broken:
            f.spoiled = True


def freezes(times_ms: list[float], band_ms: float,
            from_second: bool = False) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """The W3C freeze rule (media/freeze.py) on the times frames became showable,
    split into (certain, borderline) freezes: a frame gap within ``band_ms`` of
    the rule's limit can fall either side of it once the receiver adds its own
    timing (the jitter the relay imposed, a display's frame clock), so it is
    neither required nor forbidden. ``from_second``: the rule's durations start
    at the second frame, as the sidecar's meter does (docs/probe.md, "Video")."""
    durations: list[float] = []
    certain: list[tuple[float, float]] = []
    borderline: list[tuple[float, float]] = []
    times = times_ms[1:] if from_second else times_ms
    for last, t in zip(times, times[1:], strict=False):
        d = t - last
        recent = durations[-WINDOW:]
        if len(recent) >= 5:
            avg = sum(recent) / len(recent)
            limit = max(3 * avg, avg + 150.0)
            if d >= limit + band_ms:
                certain.append((last, t))
                continue
            if d >= limit - band_ms:
                borderline.append((last, t))
                continue
        durations.append(d)
    return certain, borderline


WINDOW = 30


def f1(certain: list[tuple[float, float]], borderline: list[tuple[float, float]],
       found: list[tuple[float, float]], early_ms: float = 300, late_ms: float = 500) -> float:
    """F1 of found freezes against the certain ones; a found one matching a
    borderline freeze counts neither way."""
    def hit(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return a[0] - early_ms <= b[1] and b[0] <= a[1] + late_ms

    found = [f for f in found if any(hit(t, f) for t in certain) or not any(hit(t, f) for t in borderline)]
    if not certain and not found:
        return 1.0
    tp_found = sum(1 for f in found if any(hit(t, f) for t in certain))
    tp_truth = sum(1 for t in certain if any(hit(t, f) for f in found))
    precision = tp_found / len(found) if found else 0.0
    recall = tp_truth / len(certain) if certain else 0.0
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
