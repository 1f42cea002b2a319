"""Video freezes by the W3C webrtc-stats rule.

webrtc-stats (RTCInboundRtpStreamStats.freezeCount) counts a freeze when the
time between two consecutively rendered frames is at least
max(3 x avg_frame_duration, avg_frame_duration + 150 ms), avg being the
mean duration of the last 30 rendered frames; totalFreezesDuration adds up
those long frame durations. As in libwebrtc's VideoQualityObserver, the
rule applies once 5 durations are known, and a freeze's own duration does
not enter the average (so one freeze does not hide the next).

Frame times here are when a frame became available to show (the probe's
receiver adds no playout delay). See docs/probe.md.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

WINDOW_FRAMES = 30
MIN_FRAMES = 5
MIN_INCREASE_MS = 150.0


@dataclass(frozen=True)
class Freeze:
    start_ms: float  # the last frame shown before the freeze
    end_ms: float  # the frame that ended it
    frames_missing: int | None = None  # frame numbers skipped across it, when known

    @property
    def duration_ms(self) -> float:
        return self.end_ms - self.start_ms


class FreezeDetector:
    """Feed frame times in display order; freezes come back as they end."""

    def __init__(self) -> None:
        self._durations: deque[float] = deque(maxlen=WINDOW_FRAMES)
        self._sum = 0.0
        self._last: float | None = None
        self.freezes: list[Freeze] = []

    def threshold_ms(self) -> float | None:
        if len(self._durations) < MIN_FRAMES:
            return None
        avg = self._sum / len(self._durations)
        return max(3 * avg, avg + MIN_INCREASE_MS)

    def frame(self, t_ms: float, frames_missing: int | None = None) -> Freeze | None:
        last = self._last
        self._last = t_ms
        if last is None:
            return None
        duration = t_ms - last
        if duration < 0:
            return None
        limit = self.threshold_ms()
        if limit is not None and duration >= limit:
            freeze = Freeze(start_ms=last, end_ms=t_ms, frames_missing=frames_missing)
            self.freezes.append(freeze)
            return freeze
        if len(self._durations) == self._durations.maxlen:
            self._sum -= self._durations[0]
        self._durations.append(duration)
        self._sum += duration
        return None


def detect(times_ms: list[float]) -> list[Freeze]:
    """Freezes in a whole series of frame times."""
    det = FreezeDetector()
    for t in times_ms:
        det.frame(t)
    return det.freezes
