"""Accounting for received stamped frames: which arrived, which never did,
which came late, and where the picture froze (docs/probe.md, "Video")."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from media.barcode import Stamp, unwrap_ms
from media.freeze import Freeze, FreezeDetector

MIN_WINDOW_MS = 30_000.0


class RollingMin:
    """Minimum of the values seen in the last ``span_ms`` (monotone deque)."""

    def __init__(self, span_ms: float = MIN_WINDOW_MS) -> None:
        self.span_ms = span_ms
        self._q: deque[tuple[float, float]] = deque()

    def add(self, t_ms: float, value: float) -> float:
        q = self._q
        while q and q[-1][1] >= value:
            q.pop()
        q.append((t_ms, value))
        while q[0][0] < t_ms - self.span_ms:
            q.popleft()
        return q[0][1]


@dataclass
class VideoInterval:
    frames_received: int = 0
    frames_lost: int = 0
    frames_late: int = 0
    frames_corrupt: int = 0
    frames_foreign: int = 0
    freezes: list[Freeze] = field(default_factory=list)
    transit_ms: list[float] = field(default_factory=list)


@dataclass
class VideoTotals:
    first_frame: int | None = None
    highest_frame: int | None = None
    received: int = 0
    lost: int = 0
    late: int = 0
    corrupt: int = 0
    # Unreadable frames before the first readable one and since the highest one: they
    # fall outside the span of numbered frames ("missed at start/end"), not in it.
    corrupt_at_start: int = 0
    corrupt_at_end: int = 0
    duplicates: int = 0
    freezes: int = 0
    freeze_ms: float = 0.0


class VideoMeter:
    """Feed it every decoded frame's stamp (None when unreadable)."""

    def __init__(self, late_ms: float = 200.0) -> None:
        self.late_ms = late_ms
        self.run: int | None = None
        self.totals = VideoTotals()
        self.interval = VideoInterval()
        self.jitter_ms = 0.0
        self.freeze_detector = FreezeDetector()
        self.lost_frames: list[int] = []  # frame numbers never received (bounded)
        self._min_transit = RollingMin()
        self._last_transit: float | None = None
        self._recent: deque[int] = deque(maxlen=256)

    def frame(self, stamp: Stamp | None, arrival_ms: float) -> None:
        iv = self.interval
        if stamp is None:
            iv.frames_corrupt += 1
            self.totals.corrupt += 1
            if self.totals.highest_frame is None:
                self.totals.corrupt_at_start += 1
            else:
                self.totals.corrupt_at_end += 1
            return
        if self.run is None:
            self.run = stamp.run
        elif stamp.run != self.run:
            iv.frames_foreign += 1
            return
        t = self.totals
        n = stamp.frame
        if t.highest_frame is None:
            t.first_frame = t.highest_frame = n
        elif n <= t.highest_frame:
            if n in self._recent:
                t.duplicates += 1
                return
            # A frame we had written off arrived after all (out of order).
            if n in self.lost_frames:
                self.lost_frames.remove(n)
            t.lost -= 1
            iv.frames_lost -= 1
        else:
            gap = n - t.highest_frame - 1
            if gap:
                t.lost += gap
                iv.frames_lost += gap
                if len(self.lost_frames) < 10_000:
                    self.lost_frames.extend(range(t.highest_frame + 1, min(n, t.highest_frame + 1 + 10_000)))
            t.highest_frame = n
            t.corrupt_at_end = 0
            freeze = self.freeze_detector.frame(arrival_ms, frames_missing=gap)
            if freeze is not None:
                iv.freezes.append(freeze)
                t.freezes += 1
                t.freeze_ms += freeze.duration_ms
        self._recent.append(n)
        t.received += 1
        iv.frames_received += 1
        send_ms = unwrap_ms(stamp.send_ms, int(arrival_ms))
        transit = arrival_ms - send_ms
        floor = self._min_transit.add(arrival_ms, transit)
        iv.transit_ms.append(transit)
        if transit - floor > self.late_ms:
            iv.frames_late += 1
            t.late += 1
        if self._last_transit is not None:
            # RFC 3550 interarrival jitter, with the stamp as the send clock.
            self.jitter_ms += (abs(transit - self._last_transit) - self.jitter_ms) / 16
        self._last_transit = transit

    def take_interval(self) -> VideoInterval:
        iv = self.interval
        self.interval = VideoInterval()
        return iv

    def account(self, frames_sent: int | None) -> dict[str, object]:
        """Every frame the sender says it sent (numbered from 0), accounted for:
        received, lost in the middle, missed before the first or after the
        last received one."""
        t = self.totals
        out: dict[str, object] = {"sent": frames_sent, "received": t.received, "lost": t.lost,
                                  "late": t.late, "corrupt": t.corrupt, "duplicates": t.duplicates}
        if frames_sent is None:
            return out
        if t.first_frame is None or t.highest_frame is None:
            out.update(missedAtStart=frames_sent, missedAtEnd=0, corruptAtStart=t.corrupt, corruptAtEnd=0,
                       accounted=frames_sent == 0)
            return out
        before = t.first_frame
        after = max(0, frames_sent - 1 - t.highest_frame)
        out.update(missedAtStart=before, missedAtEnd=after, corruptAtStart=t.corrupt_at_start,
                   corruptAtEnd=t.corrupt_at_end, accounted=t.received + t.lost + before + after == frames_sent)
        return out
