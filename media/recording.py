"""Freezes and audio dropouts in a recorded session file (PyAV + NumPy).

``bondline analyze-recording FILE`` (docs/probe.md, "Recordings"):
- Video: a freeze is a stretch without a new picture, by the W3C
  webrtc-stats rule (media/freeze.py) applied to the times at which the
  picture changed. A frame is a new picture when some 8x8 block's mean
  grey level moved by more than ``SAME_FRAME_DIFF`` since the previous
  frame: a frozen stream repeats its last picture (a recorder re-encoding
  it only refines detail, which leaves block means within ~2 levels),
  while any movement shifts block means by far more. Missing frames are
  holes in the time line, so repeated and missing frames both show as
  freezes. This is a heuristic where the probe's stamps are exact: a
  perfectly still scene would read as frozen (docs/probe.md).
- Audio: a dropout is digital silence (every sample within ``SILENCE`` of
  zero) lasting at least ``min_dropout_ms``, or a hole in the audio
  timestamps of at least one 10 ms step.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import av
import numpy as np

from media.freeze import FreezeDetector

SAME_FRAME_DIFF = 4.0  # grey levels (0-255) of an 8x8 block mean: "the same picture"
SILENCE = 1.0 / 32768  # one step of 16-bit audio
MIN_GAP_MS = 10.0


@dataclass(frozen=True)
class Episode:
    kind: str  # "freeze" | "audio_dropout"
    start_s: float
    end_s: float
    cause: str  # repeated | missing | silence | gap

    @property
    def duration_ms(self) -> float:
        return (self.end_s - self.start_s) * 1000.0


@dataclass
class RecordingReport:
    path: str
    video_frames: int = 0
    video_duration_s: float = 0.0
    audio_duration_s: float = 0.0
    episodes: list[Episode] = field(default_factory=list)

    @property
    def freezes(self) -> list[Episode]:
        return [e for e in self.episodes if e.kind == "freeze"]

    @property
    def dropouts(self) -> list[Episode]:
        return [e for e in self.episodes if e.kind == "audio_dropout"]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["freezeCount"] = len(self.freezes)
        out["freezeMs"] = round(sum(e.duration_ms for e in self.freezes), 1)
        out["dropoutCount"] = len(self.dropouts)
        out["dropoutMs"] = round(sum(e.duration_ms for e in self.dropouts), 1)
        return out

    def events(self, start_ms: int) -> list[dict[str, Any]]:
        """The episodes as probe events (``probe.freeze``, ``probe.audio_dropout``)
        on a wall clock where the recording began at ``start_ms``."""
        name = os.path.basename(self.path)
        out = []
        for e in self.episodes:
            t = start_ms + int(round(e.start_s * 1000))
            out.append({
                "key": f"recording-{name[:30]}-{e.kind}-{t}",
                "kind": f"probe.{e.kind}",
                "tMs": t,
                "endMs": start_ms + int(round(e.end_s * 1000)),
                "severity": round(e.duration_ms, 1),
                "side": "recording",
                "cause": e.cause,
                "file": name[:120],
            })
        return out


def _block_means(gray: np.ndarray) -> np.ndarray:
    h, w = gray.shape[0] // 8 * 8, gray.shape[1] // 8 * 8
    return gray[:h, :w].reshape(h // 8, 8, w // 8, 8).mean(axis=(1, 3), dtype=np.float32)


def _video(container: av.container.InputContainer, report: RecordingReport) -> None:
    stream = container.streams.video[0]
    det = FreezeDetector()
    last_pic: np.ndarray | None = None
    last_new_t: float | None = None
    last_t: float | None = None
    durations: list[float] = []
    repeated_since: float | None = None
    for frame in container.decode(stream):
        if frame.time is None:
            continue
        t = float(frame.time)
        pic = _block_means(frame.to_ndarray(format="gray"))
        report.video_frames += 1
        if last_t is not None:
            durations.append(t - last_t)
        last_t = t
        previous, last_pic = last_pic, pic
        if previous is not None and pic.shape == previous.shape and \
                float(np.abs(pic - previous).max()) <= SAME_FRAME_DIFF:
            repeated_since = repeated_since if repeated_since is not None else last_new_t
            continue
        gap_before = last_new_t
        freeze = det.frame(t * 1000.0)
        if freeze is not None and gap_before is not None:
            cause = "repeated" if repeated_since is not None else "missing"
            report.episodes.append(Episode("freeze", freeze.start_ms / 1000, freeze.end_ms / 1000, cause))
        last_new_t = t
        repeated_since = None
    if last_t is None or last_new_t is None:
        return
    step = float(np.median(durations)) if durations else 0.0
    report.video_duration_s = float(last_t + step)
    # A freeze still on at the end of the file has no frame to end it: it ends with the file.
    limit = det.threshold_ms()
    end = last_t + step
    if limit is not None and (end - last_new_t) * 1000 >= limit:
        report.episodes.append(Episode("freeze", float(last_new_t), float(end),
                                       "repeated" if repeated_since is not None else "missing"))


def _audio(container: av.container.InputContainer, report: RecordingReport, min_dropout_ms: float) -> None:
    stream = container.streams.audio[0]
    expected: float | None = None
    silent_from: float | None = None
    end = 0.0
    for frame in container.decode(stream):
        if frame.time is None or frame.samples == 0:
            continue
        t = float(frame.time)
        rate = frame.sample_rate
        data = frame.to_ndarray()
        if data.dtype.kind in "iu":
            x = data.astype(np.float32) / float(np.iinfo(data.dtype.type).max)  # type: ignore[type-var]
        else:
            x = data.astype(np.float32)
        if x.ndim == 2 and frame.format.is_planar:
            level = np.abs(x).max(axis=0)
        else:
            level = np.abs(x.reshape(-1, max(1, len(frame.layout.channels)))).max(axis=1)
        if expected is not None and (t - expected) * 1000 >= MIN_GAP_MS:
            _close_silence(report, silent_from, expected, min_dropout_ms)
            silent_from = None
            report.episodes.append(Episode("audio_dropout", expected, t, "gap"))
        # Runs of digital silence, carried across frames.
        quiet = level <= SILENCE
        if silent_from is not None and not quiet[0]:
            _close_silence(report, silent_from, t, min_dropout_ms)
            silent_from = None
        edges = np.flatnonzero(np.diff(np.concatenate([[False], quiet, [False]]).astype(np.int8)))
        for s_i, e_i in zip(edges[::2], edges[1::2], strict=True):
            run_start = silent_from if (s_i == 0 and silent_from is not None) else t + float(s_i) / rate
            silent_from = None
            if e_i == len(quiet):
                silent_from = run_start
            else:
                _close_silence(report, run_start, t + float(e_i) / rate, min_dropout_ms)
        expected = t + frame.samples / rate
        end = expected
    _close_silence(report, silent_from, end, min_dropout_ms)
    report.audio_duration_s = float(end)


def _close_silence(report: RecordingReport, start: float | None, end: float, min_ms: float) -> None:
    if start is not None and (end - start) * 1000 >= min_ms:
        report.episodes.append(Episode("audio_dropout", float(start), float(end), "silence"))


def analyze(path: str, *, min_dropout_ms: float = 100.0) -> RecordingReport:
    """Freezes and audio dropouts of the first video and audio stream of ``path``."""
    report = RecordingReport(path=path)
    with av.open(path) as container:
        if container.streams.video:
            _video(container, report)
    with av.open(path) as container:
        if container.streams.audio:
            _audio(container, report, min_dropout_ms)
    report.episodes.sort(key=lambda e: (e.start_s, e.kind))
    return report
