"""Disruption events from stored samples and connection events.

Each detector takes one participant's series (what that participant
received, or their path's round trip) and returns episodes with a start,
an end and a severity. Rules and defaults: docs/methodology.md
("Disruption events"). Events are computed on demand, never stored: a
changed threshold then applies to every past session at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from server.analysis.interruptions import media_gaps
from server.analysis.series import EventRecord, FloatArray, ParticipantSeries, SessionData
from server.config import AnalysisConfig

KINDS = ("video_freeze", "audio_dropout", "loss_burst", "latency_spike", "interruption", "reconnect")
LABELS = {
    "interruption": "Media interruption",
    "video_freeze": "Video freeze",
    "audio_dropout": "Audio dropout",
    "loss_burst": "Packet-loss burst",
    "latency_spike": "Latency spike",
    "reconnect": "Reconnect",
}
# What the severity number of each kind means (shown next to it).
SEVERITY_UNITS = {
    "video_freeze": "s frozen",
    "audio_dropout": "s concealed",
    "loss_burst": "% mean loss",
    "latency_spike": "ms peak RTT",
    "reconnect": "s without data",
    "interruption": "s without media",
}
# Collector state values that mean the connection is down / back.
DOWN_STATES = frozenset({"disconnected", "failed"})
UP_STATES = frozenset({"connected", "completed"})


@dataclass(frozen=True)
class Disruption:
    kind: str
    role: str | None
    participant_id: int | None
    # "in": what this participant received; "path": the participant's round trip;
    # "connection": the participant's collector link.
    direction: str
    start_ms: int
    end_ms: int
    severity: float
    # Freezes: how long no frame arrived at all; the rest of the freeze is the
    # decoder's recovery (waiting for a key frame). None where unknown.
    frames_missing_ms: int | None = None

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["label"] = LABELS[self.kind]
        d["severity_unit"] = SEVERITY_UNITS[self.kind]
        return d


def merge_intervals(starts: NDArray[Any], ends: NDArray[Any], gap: float) -> list[tuple[int, int, list[int]]]:
    """Merge [start, end) intervals closer than ``gap``; keep member indices."""
    if len(starts) == 0:
        return []
    order = np.argsort(starts, kind="stable")
    out: list[tuple[int, int, list[int]]] = []
    cur_s, cur_e, members = int(starts[order[0]]), int(ends[order[0]]), [int(order[0])]
    for i in order[1:]:
        s, e = int(starts[i]), int(ends[i])
        if s - cur_e < gap:
            cur_e = max(cur_e, e)
            members.append(int(i))
        else:
            out.append((cur_s, cur_e, members))
            cur_s, cur_e, members = s, e, [int(i)]
    out.append((cur_s, cur_e, members))
    return out


def _frames_gap(s: ParticipantSeries, i: int, freeze_ms: float) -> tuple[int, int] | None:
    """(frames stopped, frames resumed) for a freeze reported by sample ``i``:
    the latest run of samples with no frame received, at most the freeze's
    length before ``i``, its edges placed within the neighbouring samples
    from their frame counts at the call's usual frame rate. None without
    such a run or without frame counts."""
    frames = s.col("frames_in")
    have = np.nan_to_num(frames, nan=0.0) > 0
    lo = max(1, i - int(np.ceil(freeze_ms / float(np.median(s.interval_ms)))) - 2)
    zero = [j for j in range(i, lo - 1, -1) if np.isfinite(frames[j]) and frames[j] == 0]
    if not zero or not have.any():
        return None
    b = zero[0]
    a = b
    while a - 1 >= lo and np.isfinite(frames[a - 1]) and frames[a - 1] == 0:
        a -= 1
    if not (have[a - 1] and b + 1 < len(s) and have[b + 1]):
        return None
    rate = float(np.median(frames[have] / s.interval_ms[have]))  # frames per ms
    # The encoder's frame rate drifts (it adapts to the link): the sample
    # before the last one with frames is the better yardstick when it has them.
    before = a - 2 if a >= 2 and have[a - 2] else None
    local = rate if before is None else float(frames[before] / s.interval_ms[before])
    stop = int(s.t_ms[a - 1] + min(frames[a - 1] / local, s.interval_ms[a - 1]))
    resume = int(s.end_ms[b + 1] - min(frames[b + 1] / rate, s.interval_ms[b + 1]))
    return stop, max(resume, stop)


def detect_freezes(s: ParticipantSeries, cfg: AnalysisConfig) -> list[Disruption]:
    """Freezes as the receiving browser counted them (W3C totalFreezesDuration).

    The counter grows in the first sample after video resumes, not during
    the freeze. Where frame counts show a run of samples with no frame
    received, the freeze starts where frames stopped arriving (``_frames_gap``)
    and lasts ``freeze_ms``; the span without frames is kept apart from the
    decoder's recovery after it. When nothing at all arrived (an
    interruption), its start, placed by audio packets, is the sharper one. Otherwise a freeze reported by sample i is
    placed to end at the end of that sample and to start ``freeze_ms`` earlier.
    """
    freeze = s.col("freeze_ms_in")
    hit = np.flatnonzero(np.nan_to_num(freeze, nan=0.0) > 0)
    if hit.size == 0:
        return []
    ends = s.end_ms[hit].copy()
    starts = ends - np.rint(freeze[hit]).astype(np.int64)
    missing: dict[int, tuple[int, int]] = {}
    # Where nothing at all arrived (an interruption), no frame did either, and
    # audio packet counts place the cut to a packet (20 ms); frame counts only
    # to a frame at a drifting rate, and stay at zero until a key frame.
    cuts = detect_interruptions(s, cfg)
    for k, i in enumerate(hit):
        # The freeze ended by the end of the sample that reported it and
        # began at most its length (plus a sample of reporting delay) before.
        early = int(s.end_ms[i] - freeze[i] - 2 * s.interval_ms[i])
        cut = [c for c in cuts if c.end_ms <= s.end_ms[i] and c.end_ms >= early]
        gap = (cut[-1].start_ms, cut[-1].end_ms) if cut else _frames_gap(s, int(i), float(freeze[i]))
        if gap is not None:
            # The freeze ended (the next frame was shown) within the sample
            # that reported it: its start lies within that sample's length.
            f_ms = int(round(freeze[i]))
            starts[k] = min(max(gap[0], int(s.t_ms[i]) - f_ms), int(s.end_ms[i]) - f_ms)
            ends[k] = starts[k] + f_ms
            missing[k] = gap
    # Freezes placed from a gap merge only where they touch; those placed
    # from their report alone (an estimate) within merge_gap_ms, as before.
    groups: list[tuple[int, int, list[int]]] = []
    placed = [k for k in range(hit.size) if k in missing]
    rough = [k for k in range(hit.size) if k not in missing]
    for ks, gap_ms in ((placed, 1.0), (rough, cfg.merge_gap_ms)):
        if ks:
            sel = np.asarray(ks)
            groups += [(a, b, [ks[m] for m in ms]) for a, b, ms in merge_intervals(starts[sel], ends[sel], gap_ms)]
    groups.sort()
    joined: list[tuple[int, int, list[int]]] = []
    for a, b, ms in groups:
        if joined and a <= joined[-1][1]:
            pa, pb, pm = joined[-1]
            joined[-1] = (pa, max(pb, b), pm + ms)
        else:
            joined.append((a, b, ms))
    out = []
    for a, b, members in joined:
        frozen_ms = float(freeze[hit[members]].sum())
        # One cut may be reported over two samples: each span counts once.
        gaps = [y - x for x, y in {missing[m] for m in members if m in missing}]
        if frozen_ms >= cfg.freeze_min_ms:
            out.append(Disruption("video_freeze", s.role, s.participant_id, "in", a, b, round(frozen_ms / 1000, 1),
                                  sum(gaps) if gaps else None))
    return out


def detect_audio_dropouts(s: ParticipantSeries, cfg: AnalysisConfig) -> list[Disruption]:
    """Runs of consecutive samples whose concealed share reaches the
    threshold, placed to the sub-second: concealment is taken to be one
    stretch, so a partly concealed first sample of a run holds it at its
    end, a partly concealed last one at its start, and a fully concealed
    edge sample continues into its neighbour by the neighbour's concealed
    share. Runs merge only where they touch (never across a sample below
    the threshold)."""
    ratio = s.col("concealed_ratio_in")
    r = np.nan_to_num(ratio, nan=0.0).clip(0.0, 1.0)
    r[: playout_start(s) + 1] = 0.0
    iv = s.interval_ms
    full = 0.9
    out = []
    for a, b in _runs(r >= cfg.audio_concealed_ratio):
        if a == b and r[a] < full:
            mid = s.t_ms[a] + iv[a] / 2  # where in the sample is unknown: centred
            start, end = int(mid - r[a] * iv[a] / 2), int(mid + r[a] * iv[a] / 2)
        else:
            first_full, last_full = r[a] >= full and a > 0, r[b] >= full and b < len(s) - 1
            start = int(s.t_ms[a] - r[a - 1] * iv[a - 1]) if first_full else int(s.end_ms[a] - r[a] * iv[a])
            end = int(s.end_ms[b] + r[b + 1] * iv[b + 1]) if last_full else int(s.t_ms[b] + r[b] * iv[b])
        concealed_s = float((r[a: b + 1] * iv[a: b + 1]).sum() / 1000)
        if end - start >= cfg.audio_min_ms:
            out.append(Disruption("audio_dropout", s.role, s.participant_id, "in", start, end, round(concealed_s, 1)))
    return out


def playout_start(s: ParticipantSeries) -> int:
    """Index of the sample in which the receiver's audio playout started: the
    first with audio received (its audio packet count, else its concealment
    figure, grows from nothing). Its concealment and any before it cover
    connection set-up and the jitter buffer filling, not a dropout: only from
    the next sample has audio been playing for a whole interval. -1 without audio."""
    for col in ("audio_packets_in", "concealed_ratio_in"):
        v = s.col(col)
        got = np.flatnonzero(np.nan_to_num(v, nan=0.0) > 0) if col == "audio_packets_in" else np.flatnonzero(
            np.isfinite(v))
        if got.size:
            return int(got[0])
    return -1


def _runs(mask: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """Index ranges [a, b] (inclusive) of consecutive True values."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    diff = np.diff(padded)
    return list(zip(np.flatnonzero(diff == 1).tolist(), (np.flatnonzero(diff == -1) - 1).tolist(), strict=True))


def k_of_n(cross: NDArray[np.bool_], k: int, n: int) -> NDArray[np.bool_]:
    """Samples that belong to a window of ``n`` in which at least ``k`` cross.

    raised[i]: at least k of samples i-n+1..i cross. A crossing sample j is
    part of an episode when some raised window contains it.
    """
    c = cross.astype(np.int32)
    counts = np.convolve(c, np.ones(n, dtype=np.int32))[: c.size]  # window ending at i
    raised = counts >= k
    # covered[j]: some raised window i in [j, j+n-1] contains j.
    covered = np.convolve(raised.astype(np.int32), np.ones(n, dtype=np.int32))[n - 1 : n - 1 + c.size] > 0
    return np.asarray(cross & covered)


def _threshold_episodes(
    s: ParticipantSeries, values: FloatArray, threshold: float, kind: str, direction: str,
    cfg: AnalysisConfig, severity: str,
) -> list[Disruption]:
    cross = np.nan_to_num(values, nan=-np.inf) > threshold
    member = k_of_n(cross, cfg.window_k, cfg.window_n)
    idx = np.flatnonzero(member)
    if idx.size == 0:
        return []
    # Crossing samples within one window of each other form one episode.
    span = float(np.median(s.interval_ms)) * cfg.window_n
    out = []
    for a, b, members in merge_intervals(s.t_ms[idx], s.end_ms[idx], max(cfg.merge_gap_ms, span)):
        v = values[idx[members]]
        sev = float(np.max(v)) if severity == "max" else float(np.mean(v)) * 100.0
        out.append(Disruption(kind, s.role, s.participant_id, direction, a, b, round(sev, 1)))
    return out


def detect_loss_bursts(s: ParticipantSeries, cfg: AnalysisConfig) -> list[Disruption]:
    return _threshold_episodes(s, s.col("loss_in"), cfg.loss_fraction, "loss_burst", "in", cfg, "mean")


def detect_latency_spikes(s: ParticipantSeries, cfg: AnalysisConfig) -> list[Disruption]:
    return _threshold_episodes(s, s.col("rtt_ms"), cfg.rtt_ms, "latency_spike", "path", cfg, "max")


def detect_interruptions(s: ParticipantSeries, cfg: AnalysisConfig) -> list[Disruption]:
    """Media interruptions: spans in which nothing arrived (server/analysis/interruptions.py)."""
    return [Disruption("interruption", s.role, s.participant_id, "in", a, b, round((b - a) / 1000, 1))
            for a, b in media_gaps(s)]


def detect_reconnects(events: list[EventRecord], cfg: AnalysisConfig,
                      gaps: dict[int, list[tuple[int, int]]] | None = None) -> list[Disruption]:
    """Reconnects: the server saw a collector come back (``collector.connect``
    with a non-null ``lastSeq``), or a collector reported its connection
    state going down and up again while that participant's media was
    interrupted (``gaps``: participant -> media gaps, from the samples). The
    outage runs from the last disconnect (or down state) to the reconnect.
    A state flap without a media gap under it (ICE often reports one after
    media has resumed) is no disruption: the state events stay stored as
    evidence of their own."""
    out: list[Disruption] = []
    down_since: dict[int, int] = {}
    last_disconnect: dict[int, int] = {}
    roles: dict[int, str | None] = {}
    for e in sorted(events, key=lambda e: e.t_ms):
        pid = e.participant_id
        if pid is None:
            continue
        roles[pid] = e.role
        if e.kind == "collector.disconnect":
            last_disconnect[pid] = e.t_ms
        elif e.kind == "collector.connect" and e.data.get("lastSeq") is not None:
            since = last_disconnect.pop(pid, None)
            start = since if since is not None and e.t_ms - since <= cfg.reconnect_max_gap_ms else e.t_ms
            out.append(Disruption("reconnect", e.role, pid, "connection", start, e.t_ms,
                                  round((e.t_ms - start) / 1000, 1)))
        elif e.origin == "collector":
            state = e.data.get("state", e.data.get("iceState"))
            if state in DOWN_STATES and pid not in down_since:
                down_since[pid] = e.t_ms
            elif state in UP_STATES and pid in down_since:
                start = down_since.pop(pid)
                if not any(a <= e.t_ms and b >= start for a, b in (gaps or {}).get(pid, [])):
                    continue
                out.append(Disruption("reconnect", e.role, pid, "connection", start, e.t_ms,
                                      round((e.t_ms - start) / 1000, 1)))
    # Two reports of one outage (server and collector) become one event.
    merged: list[Disruption] = []
    for d in sorted(out, key=lambda d: (d.participant_id or 0, d.start_ms)):
        prev = merged[-1] if merged else None
        if prev is not None and prev.participant_id == d.participant_id and d.start_ms <= prev.end_ms + 1000:
            end = max(prev.end_ms, d.end_ms)
            merged[-1] = Disruption("reconnect", prev.role, prev.participant_id, "connection", prev.start_ms, end,
                                    round((end - prev.start_ms) / 1000, 1))
        else:
            merged.append(d)
    return merged


def detect_all(data: SessionData, cfg: AnalysisConfig) -> list[Disruption]:
    out: list[Disruption] = []
    gaps: dict[int, list[tuple[int, int]]] = {}
    for s in data.participants:
        if len(s) == 0:
            continue
        out += detect_freezes(s, cfg)
        out += detect_audio_dropouts(s, cfg)
        out += detect_loss_bursts(s, cfg)
        out += detect_latency_spikes(s, cfg)
        cuts = detect_interruptions(s, cfg)
        gaps[s.participant_id] = [(d.start_ms, d.end_ms) for d in cuts]
        out += cuts
    out += detect_reconnects(data.events, cfg, gaps)
    out.sort(key=lambda d: (d.start_ms, KINDS.index(d.kind)))
    return out
