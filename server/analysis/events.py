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

from server.analysis.config import AnalysisConfig
from server.analysis.series import EventRecord, FloatArray, ParticipantSeries, SessionData

KINDS = ("video_freeze", "audio_dropout", "loss_burst", "latency_spike", "reconnect")
LABELS = {
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


def _runs(mask: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """Index ranges [a, b] (inclusive) of consecutive True values."""
    if mask.size == 0:
        return []
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    diff = np.diff(padded)
    starts = np.flatnonzero(diff == 1)
    ends = np.flatnonzero(diff == -1) - 1
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def detect_freezes(s: ParticipantSeries, cfg: AnalysisConfig) -> list[Disruption]:
    """Freezes as the receiving browser counted them (W3C totalFreezesDuration).

    The counter grows in the first sample after video resumes, so a freeze
    reported by sample i is placed to end at the end of that sample and to
    start ``freeze_ms`` earlier.
    """
    freeze = s.col("freeze_ms_in")
    hit = np.flatnonzero(np.nan_to_num(freeze, nan=0.0) > 0)
    if hit.size == 0:
        return []
    ends = s.end_ms[hit]
    starts = ends - np.rint(freeze[hit]).astype(np.int64)
    out = []
    for a, b, members in merge_intervals(starts, ends, cfg.merge_gap_ms):
        frozen_ms = float(freeze[hit[members]].sum())
        if frozen_ms >= cfg.freeze_min_ms:
            out.append(Disruption("video_freeze", s.role, s.participant_id, "in", a, b, round(frozen_ms / 1000, 1)))
    return out


def detect_audio_dropouts(s: ParticipantSeries, cfg: AnalysisConfig) -> list[Disruption]:
    ratio = s.col("concealed_ratio_in")
    mask = np.nan_to_num(ratio, nan=0.0) >= cfg.audio_concealed_ratio
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return []
    out = []
    for a, b, members in merge_intervals(s.t_ms[idx], s.end_ms[idx], cfg.merge_gap_ms):
        sel = idx[members]
        concealed_s = float((ratio[sel] * s.interval_ms[sel]).sum() / 1000)
        if b - a >= cfg.audio_min_ms:
            out.append(Disruption("audio_dropout", s.role, s.participant_id, "in", a, b, round(concealed_s, 1)))
    return out


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


def detect_reconnects(events: list[EventRecord], cfg: AnalysisConfig) -> list[Disruption]:
    """Reconnects: the server saw a collector come back (``collector.connect``
    with a non-null ``lastSeq``), or a collector reported its connection
    state going down and up again. The outage runs from the last disconnect
    (or down state) to the reconnect."""
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
    for s in data.participants:
        if len(s) == 0:
            continue
        out += detect_freezes(s, cfg)
        out += detect_audio_dropouts(s, cfg)
        out += detect_loss_bursts(s, cfg)
        out += detect_latency_spikes(s, cfg)
    out += detect_reconnects(data.events, cfg)
    out.sort(key=lambda d: (d.start_ms, KINDS.index(d.kind)))
    return out
