"""Disruption events and the session summary on constructed series whose
episodes are known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from server.analysis.config import AnalysisConfig
from server.analysis.events import (
    detect_all,
    detect_audio_dropouts,
    detect_freezes,
    detect_latency_spikes,
    detect_loss_bursts,
    detect_reconnects,
    k_of_n,
)
from server.analysis.series import METRICS, EventRecord, ParticipantSeries, SessionData
from server.analysis.summary import summarise

CFG = AnalysisConfig()
T0 = 1_700_000_000_000
N = 1200  # 20 minutes at 1 Hz


def clean(n: int = N, role: str = "client", pid: int = 1) -> ParticipantSeries:
    values = {name: np.zeros(n) for name in METRICS}
    values["rtt_ms"][:] = 40.0
    values["jitter_ms"][:] = 5.0
    values["fps_in"][:] = 20.0
    values["concealed_ratio_in"][:] = 0.01
    t = T0 + np.arange(n, dtype=np.int64) * 1000
    return ParticipantSeries(pid, role, t, np.full(n, 1000, dtype=np.int64), values)


def sec(ms: int) -> float:
    return (ms - T0) / 1000


def test_clean_series_has_no_events() -> None:
    data = SessionData(1, T0, T0 + N * 1000, [clean(), clean(role="clinician", pid=2)])
    assert detect_all(data, CFG) == []
    s = summarise(data, CFG)
    assert (s.minutes, s.disrupted_minutes, s.verdict) == (20, 0, "good")


def test_freeze_is_placed_before_the_sample_that_reports_it() -> None:
    s = clean()
    s.values["freeze_ms_in"][100] = 5000.0  # reported in the first sample after video resumed
    s.values["freeze_ms_in"][300] = 400.0  # a W3C freeze, but shorter than freeze_min_ms
    s.values["freeze_ms_in"][500] = 800.0  # two short freezes 1.2 s apart merge into one of 1.6 s
    s.values["freeze_ms_in"][502] = 800.0
    ev = detect_freezes(s, CFG)
    assert [(sec(e.start_ms), sec(e.end_ms), e.severity) for e in ev] == [(96.0, 101.0, 5.0), (500.2, 503.0, 1.6)]


def test_audio_dropout_needs_threshold_and_duration() -> None:
    s = clean()
    s.values["concealed_ratio_in"][200:205] = 0.5
    s.values["concealed_ratio_in"][400] = 0.19  # below the 20 % threshold
    ev = detect_audio_dropouts(s, CFG)
    assert [(sec(e.start_ms), sec(e.end_ms), e.severity) for e in ev] == [(200.0, 205.0, 2.5)]
    short = AnalysisConfig(audio_min_ms=6000)
    assert detect_audio_dropouts(s, short) == []


def test_k_of_n_rule() -> None:
    cross = np.zeros(20, dtype=bool)
    cross[[2, 4]] = True  # 2 of 5: nothing
    assert not k_of_n(cross, 3, 5).any()
    cross[6] = True  # 2, 4, 6 lie in one window of 5: all three count
    assert np.flatnonzero(k_of_n(cross, 3, 5)).tolist() == [2, 4, 6]


def test_loss_burst_spans_its_crossing_samples() -> None:
    s = clean()
    s.values["loss_in"][300:310] = 0.05
    s.values["loss_in"][400] = 0.05  # isolated spikes: 2 of 5
    s.values["loss_in"][402] = 0.05
    s.values["loss_in"][600] = np.nan  # missing figures never count as loss
    ev = detect_loss_bursts(s, CFG)
    assert [(sec(e.start_ms), sec(e.end_ms), e.severity) for e in ev] == [(300.0, 310.0, 5.0)]


def test_latency_spike_uses_rtt_threshold_and_reports_peak() -> None:
    s = clean()
    s.values["rtt_ms"][700:720] = 600.0
    s.values["rtt_ms"][710] = 900.0
    s.values["rtt_ms"][800:802] = 500.0  # two samples only: below 3 of 5
    ev = detect_latency_spikes(s, CFG)
    assert [(sec(e.start_ms), sec(e.end_ms), e.severity) for e in ev] == [(700.0, 720.0, 900.0)]


def test_reconnects_from_server_and_collector_events() -> None:
    events = [
        EventRecord(1, "client", "collector.connect", "server", T0, None, {"lastSeq": None}),
        EventRecord(1, "client", "collector.disconnect", "server", T0 + 100_000, None, {"code": 1006}),
        EventRecord(1, "client", "collector.connect", "server", T0 + 110_000, None, {"lastSeq": 99}),
        EventRecord(2, "clinician", "pc.state", "collector", T0 + 300_000, None, {"state": "disconnected"}),
        EventRecord(2, "clinician", "pc.state", "collector", T0 + 304_000, None, {"state": "failed"}),
        EventRecord(2, "clinician", "pc.state", "collector", T0 + 312_000, None, {"state": "connected"}),
    ]
    ev = detect_reconnects(events, CFG)
    assert [(e.role, sec(e.start_ms), sec(e.end_ms), e.severity) for e in ev] == [
        ("client", 100.0, 110.0, 10.0),
        ("clinician", 300.0, 312.0, 12.0),
    ]


def test_summary_counts_minutes_and_gives_a_verdict() -> None:
    a, b = clean(), clean(role="clinician", pid=2)
    a.values["loss_in"][125:135] = 0.05  # minute 3 (index 2)
    a.values["rtt_ms"][590:610] = 600.0  # minutes 10 and 11
    b.values["rtt_ms"][590:610] = 600.0
    b.values["freeze_ms_in"][1000] = 3000.0  # minute 17
    a.values["concealed_ratio_in"][60:120] = 0.30  # the worst audio minute is minute 2 (index 1)
    data = SessionData(1, T0, T0 + N * 1000, [a, b])
    s = summarise(data, CFG)
    # Minute 2 (dropout), 3 (loss), 10 and 11 (latency), 17 (freeze).
    assert s.disrupted_minutes == 5
    assert s.disrupted_pct == pytest.approx(25.0)
    assert s.events_by_kind["latency_spike"] == 2 and s.events_by_kind["video_freeze"] == 1
    assert s.freeze_total_s == 3.0
    assert s.verdict == "poor"
    assert s.verdict_text.startswith("Connection was poor: 5 of 20 minutes had a disruption")
    client = s.participants[0]
    assert client.worst_audio_minute == 1
    assert client.worst_audio_concealed_pct == pytest.approx(30.0)
    assert client.rtt_median_ms == 40.0
    assert client.rtt_p95_ms == pytest.approx(40.0)
    # Clean minutes: RTT 40, jitter 5, no loss -> R = 92.2 -> MOS 4.39.
    assert client.mos_median == pytest.approx(4.39, abs=0.01)


def test_empty_session_says_no_data() -> None:
    data = SessionData(1, None, None, [clean(0), clean(0, role="clinician", pid=2)])
    s = summarise(data, CFG)
    assert s.verdict == "no data" and s.minutes == 0
