"""Session quality summary: the figures a clinician reads first.

Definitions: docs/methodology.md ("Session quality summary"). Every figure
is None when the samples it needs are missing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from server.analysis import emodel
from server.analysis.audio_loss import audio_lost_fraction, audio_lost_s
from server.analysis.events import KINDS, LABELS, Disruption, detect_all
from server.analysis.series import FloatArray, ParticipantSeries, SessionData
from server.config import AnalysisConfig

MINUTE_MS = 60_000
ROLE_NAMES = {"client": "the client", "clinician": "the clinician"}


@dataclass
class ParticipantSummary:
    role: str
    samples: int
    rtt_median_ms: float | None
    rtt_p95_ms: float | None
    jitter_median_ms: float | None
    loss_mean_pct: float | None
    audio_loss_mean_pct: float | None
    video_loss_mean_pct: float | None
    freeze_total_s: float | None
    worst_audio_minute: int | None
    worst_audio_concealed_pct: float | None
    mos_median: float | None
    mos_worst_minute: float | None
    # Seconds of audio lost, outages included (server/analysis/audio_loss.py).
    audio_lost_s: float | None = None


@dataclass
class SessionSummary:
    session_id: int
    t0_ms: int | None
    minutes: int
    disrupted_minutes: int
    disrupted_pct: float | None
    events_by_kind: dict[str, int]
    seconds_by_kind: dict[str, float]
    freeze_total_s: float | None
    rtt_median_ms: float | None
    rtt_p95_ms: float | None
    mos_median: float | None
    verdict: str
    verdict_text: str
    participants: list[ParticipantSummary] = field(default_factory=list)
    # Disrupted minutes per side (server/analysis/attribution.py, side_minutes):
    # "client", "clinician", "between", "undetermined". None: not attributed.
    side_minutes: dict[str, int] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SessionSummary:
        parts = [ParticipantSummary(**p) for p in d.get("participants", [])]
        return cls(**{**d, "participants": parts})


def _r(x: float | np.floating[Any] | None, nd: int = 1) -> float | None:
    if x is None:
        return None
    v = float(x)
    return None if math.isnan(v) else round(v, nd)


def _finite(a: FloatArray) -> FloatArray:
    return a[~np.isnan(a)]


def _pct(a: FloatArray, q: float) -> float | None:
    f = _finite(a)
    return float(np.percentile(f, q)) if f.size else None


def _mean(a: FloatArray) -> float | None:
    f = _finite(a)
    return float(f.mean()) if f.size else None


def minute_index(s: ParticipantSeries, t0_ms: int) -> np.ndarray:
    return ((s.t_ms - t0_ms) // MINUTE_MS).astype(np.int64)


def _per_minute(values: FloatArray, minutes: np.ndarray, n: int, how: str) -> FloatArray:
    """Per-minute aggregate, NaN for minutes without a finite value."""
    ok = ~np.isnan(values)
    out = np.full(n, np.nan)
    if not ok.any():
        return out
    m, v = minutes[ok], values[ok]
    keep = (m >= 0) & (m < n)
    m, v = m[keep], v[keep]
    if how == "mean":
        sums = np.bincount(m, weights=v, minlength=n)
        counts = np.bincount(m, minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        return out
    # median: sort by minute and split
    order = np.lexsort((v, m))
    m, v = m[order], v[order]
    bounds = np.flatnonzero(np.diff(m)) + 1
    for chunk_m, chunk_v in zip(np.split(m, bounds), np.split(v, bounds), strict=True):
        out[chunk_m[0]] = float(np.median(chunk_v))
    return out


def minute_mos(s: ParticipantSeries, t0_ms: int, n: int, cfg: AnalysisConfig) -> FloatArray:
    """MOS of each minute from its median RTT, mean jitter and mean audio loss."""
    mi = minute_index(s, t0_ms)
    rtt = _per_minute(s.col("rtt_ms"), mi, n, "median")
    jit = _per_minute(s.col("jitter_ms"), mi, n, "mean")
    # The E-model's loss is packet loss (its Bpl is about lost packets);
    # concealment from jitter is not loss here.
    loss = s.col("audio_loss_in")
    if np.isnan(loss).all():
        loss = s.col("loss_in")
    lo = _per_minute(loss, mi, n, "mean")
    # Jitter or loss not reported: the estimate still needs the delay term.
    jit = np.where(np.isnan(jit) & ~np.isnan(rtt), 0.0, jit)
    lo = np.where(np.isnan(lo) & ~np.isnan(rtt), 0.0, lo)
    return emodel.mos(rtt, jit, lo, cfg)


def _pct_of(v: float | None) -> float | None:
    return None if v is None else v * 100


def participant_summary(s: ParticipantSeries, t0_ms: int, n: int, cfg: AnalysisConfig) -> ParticipantSummary:
    mi = minute_index(s, t0_ms)
    conceal = _per_minute(s.col("concealed_ratio_in"), mi, n, "mean")
    worst_audio: int | None = None
    worst_pct: float | None = None
    if not np.isnan(conceal).all():
        worst_audio = int(np.nanargmax(conceal))
        worst_pct = float(conceal[worst_audio]) * 100
    mos = minute_mos(s, t0_ms, n, cfg)
    freeze = _finite(s.col("freeze_ms_in"))
    return ParticipantSummary(
        role=s.role,
        samples=len(s),
        rtt_median_ms=_r(_pct(s.col("rtt_ms"), 50)),
        rtt_p95_ms=_r(_pct(s.col("rtt_ms"), 95)),
        jitter_median_ms=_r(_pct(s.col("jitter_ms"), 50)),
        loss_mean_pct=_r(_pct_of(_mean(s.col("loss_in"))), 2),
        audio_loss_mean_pct=_r(_pct_of(_mean(audio_lost_fraction(s))), 2),
        audio_lost_s=_r(audio_lost_s(s)),
        video_loss_mean_pct=_r(_pct_of(_mean(s.col("video_loss_in"))), 2),
        freeze_total_s=_r(freeze.sum() / 1000) if freeze.size else None,
        worst_audio_minute=worst_audio,
        worst_audio_concealed_pct=_r(worst_pct),
        mos_median=_r(_pct(mos, 50), 2),
        mos_worst_minute=_r(float(np.nanmin(mos)) if not np.isnan(mos).all() else None, 2),
    )


def disrupted_minute_mask(events: list[Disruption], t0_ms: int, n: int) -> np.ndarray:
    """Minute m is disrupted when any event overlaps [t0 + m min, t0 + (m+1) min)."""
    mask = np.zeros(n, dtype=bool)
    for d in events:
        first = (d.start_ms - t0_ms) // MINUTE_MS
        last = (max(d.end_ms - 1, d.start_ms) - t0_ms) // MINUTE_MS
        a, b = max(int(first), 0), min(int(last), n - 1)
        if a <= b:
            mask[a : b + 1] = True
    return mask


def _verdict(s: SessionSummary, events: list[Disruption], cfg: AnalysisConfig) -> tuple[str, str]:
    if s.minutes == 0 or s.disrupted_pct is None:
        return "no data", "No connection data was received for this session."
    reconnects = s.events_by_kind.get("reconnect", 0)
    poor = s.disrupted_pct >= cfg.verdict_poor_minutes_pct or (s.mos_median is not None and s.mos_median < cfg.mos_poor)
    good = s.disrupted_pct <= cfg.verdict_good_minutes_pct and reconnects == 0 and not poor
    verdict = "poor" if poor else "good" if good else "fair"
    text = f"Connection was {verdict}: {s.disrupted_minutes} of {s.minutes} minutes had a disruption"
    if events:
        # The kind and side that took the most time, in plain words.
        weight: dict[tuple[str, str | None], float] = {}
        for d in events:
            key = (d.kind, d.role)
            weight[key] = weight.get(key, 0.0) + max(d.duration_ms, 1000)
        (kind, role), _ = max(weight.items(), key=lambda kv: kv[1])
        text += f", mostly {LABELS[kind].lower()}s"
        # A round trip is shared by both sides; other kinds belong to one.
        if role and kind != "latency_spike":
            text += f" for {ROLE_NAMES.get(role, role)}"
    if reconnects:
        text += f"; the connection dropped and came back {reconnects} time{'s' if reconnects != 1 else ''}"
    return verdict, text + "."


def summarise(data: SessionData, cfg: AnalysisConfig, events: list[Disruption] | None = None) -> SessionSummary:
    events = detect_all(data, cfg) if events is None else events
    t0, t1 = data.t0_ms, data.t1_ms
    n = 0 if t0 is None or t1 is None or t1 <= t0 else int(math.ceil((t1 - t0) / MINUTE_MS))
    parts = [participant_summary(p, t0, n, cfg) for p in data.participants if len(p) and t0 is not None]
    mask = disrupted_minute_mask(events, t0, n) if t0 is not None and n else np.zeros(0, dtype=bool)
    by_kind = {k: 0 for k in KINDS}
    secs = {k: 0.0 for k in KINDS}
    for d in events:
        by_kind[d.kind] += 1
        secs[d.kind] += d.duration_ms / 1000
    rtt_all = np.concatenate([p.col("rtt_ms") for p in data.participants]) if data.participants else np.empty(0)
    freezes = [p.freeze_total_s for p in parts if p.freeze_total_s is not None]
    mos_all = [p.mos_median for p in parts if p.mos_median is not None]
    s = SessionSummary(
        session_id=data.session_id,
        t0_ms=t0,
        minutes=n,
        disrupted_minutes=int(mask.sum()),
        disrupted_pct=_r(100.0 * mask.sum() / n) if n else None,
        events_by_kind=by_kind,
        seconds_by_kind={k: round(v, 1) for k, v in secs.items()},
        freeze_total_s=_r(sum(freezes)) if freezes else None,
        rtt_median_ms=_r(_pct(rtt_all, 50)),
        rtt_p95_ms=_r(_pct(rtt_all, 95)),
        mos_median=min(mos_all) if mos_all else None,
        verdict="",
        verdict_text="",
        participants=parts,
    )
    s.verdict, s.verdict_text = _verdict(s, events, cfg)
    return s
