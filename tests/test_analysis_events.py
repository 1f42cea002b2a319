"""Disruption events and the session summary on constructed series whose
episodes are known exactly."""

from __future__ import annotations

import numpy as np
import pytest

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
from server.config import AnalysisConfig

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
    # Concealment is one stretch: the first sample's half at its end, the last one's at its start.
    assert [(sec(e.start_ms), sec(e.end_ms), e.severity) for e in ev] == [(200.5, 204.5, 2.5)]
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
    # The clinician's state flap counts only with a media gap under it.
    assert [(e.role, sec(e.start_ms)) for e in detect_reconnects(events, CFG)] == [("client", 100.0)]
    ev = detect_reconnects(events, CFG, {2: [(T0 + 300_500, T0 + 311_000)]})
    assert [(e.role, sec(e.start_ms), sec(e.end_ms), e.severity) for e in ev] == [
        ("client", 100.0, 110.0, 10.0),
        ("clinician", 300.0, 312.0, 12.0),
    ]
    # ICE reporting a flap after media had already resumed: no reconnect.
    late = [EventRecord(2, "clinician", "ice.state", "collector", T0 + 320_000, None, {"state": "disconnected"}),
            EventRecord(2, "clinician", "ice.state", "collector", T0 + 320_000, None, {"state": "connected"})]
    assert detect_reconnects(late, CFG, {2: [(T0 + 314_000, T0 + 319_000)]}) == []


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


def test_interruption_from_media_with_sub_second_edges() -> None:
    from server.analysis.events import detect_interruptions

    s = clean()
    s.values["audio_packets_in"][:] = 50.0  # Opus: one packet per 20 ms
    s.values["audio_packets_in"][100] = 30.0  # media stopped 0.6 s into sample 100
    s.values["no_media_in"][101:104] = 1.0
    s.values["audio_packets_in"][101:104] = 0.0
    s.values["audio_packets_in"][104] = 20.0  # and came back 0.6 s into sample 104 (0.4 s of it left)
    s.values["no_media_in"][N - 3:] = 1.0  # the call ending: not an interruption
    ev = detect_interruptions(s, CFG)
    assert [(e.kind, sec(e.start_ms), sec(e.end_ms), e.severity) for e in ev] == [("interruption", 100.6, 104.6, 4.0)]
    # A lossy link: before the cut, packets sent (received and counted lost) at the usual send
    # rate; after it, packets received at the usual receive rate.
    s.values["audio_packets_in"][:100] = 45.0  # 10 % loss: 45 of 50 a second
    s.values["audio_packets_in"][105:] = 45.0
    s.values["audio_loss_in"][:] = 0.1
    s.values["audio_packets_in"][100] = 32.0  # 32 of 40 sent (20 % lost): 0.8 s of it
    s.values["audio_loss_in"][100] = 0.2
    s.values["audio_packets_in"][104] = 18.0  # 0.4 s at 45 a second
    assert [(sec(e.start_ms), sec(e.end_ms)) for e in detect_interruptions(s, CFG)] == [(100.8, 104.6)]
    data = SessionData(1, T0, T0 + N * 1000, [s])
    assert [e.kind for e in detect_all(data, CFG)] == ["interruption"]


def test_an_interruption_is_shaded_on_the_charts_and_not_drawn_as_zero_loss() -> None:
    from server.analysis.events import detect_interruptions
    from server.reports.charts import KIND_COLOURS, timeline_svg

    s = clean(n=120)
    s.values["audio_packets_in"][:] = 50.0
    s.values["no_media_in"][50:55] = 1.0
    s.values["loss_in"][50:55] = np.nan  # as stored: null, not 0 %
    ev = detect_interruptions(s, CFG)
    assert len(ev) == 1
    svg = timeline_svg(s, ev, T0, T0 + 120_000, "t")
    assert KIND_COLOURS["interruption"] in svg


def test_a_five_second_outage_is_five_seconds_of_lost_audio() -> None:
    from server.analysis.audio_loss import audio_lost_fraction, audio_lost_s

    s = clean(n=60)
    s.values["concealed_ratio_in"][:] = 0.0
    s.values["no_media_in"][20:25] = 1.0
    s.values["audio_loss_in"][20:25] = np.nan  # stored as null: nothing arrived
    s.values["concealed_ratio_in"][20:25] = 1.0  # the playout concealed all of it
    # Chromium restarted the audio stream after the gap: the resume second counts no lost packet,
    # though concealment still ran for its first 300 ms.
    s.values["concealed_ratio_in"][25] = 0.3
    assert audio_lost_s(s) == pytest.approx(5.3)
    f = audio_lost_fraction(s)
    assert f[19] == 0.0 and f[26] == 0.0  # media on both sides: packets tell
    data = SessionData(1, T0, T0 + 60_000, [s])
    (p,) = summarise(data, CFG).participants
    assert p.audio_lost_s == pytest.approx(5.3) and p.audio_loss_mean_pct == pytest.approx(5.3 / 60 * 100, abs=0.01)


def test_freeze_starts_where_frames_stopped_and_keeps_the_gap_apart_from_recovery() -> None:
    s = clean()
    s.values["frames_in"][:] = 20.0  # 20 fps
    s.values["frames_in"][100] = 12.0  # frames stopped 0.6 s into sample 100
    s.values["frames_in"][101:103] = 0.0
    s.values["frames_in"][103] = 8.0  # and arrived again for the last 0.4 s of sample 103
    s.values["freeze_ms_in"][104] = 3500.0  # reported once rendering resumed, key frame wait included
    (e,) = detect_freezes(s, CFG)
    assert (sec(e.start_ms), sec(e.end_ms), e.severity, e.frames_missing_ms) == (100.6, 104.1, 3.5, 3000)
    assert e.as_dict()["frames_missing_ms"] == 3000


def test_a_cut_across_a_sample_boundary_is_an_interruption_too() -> None:
    from server.analysis.events import detect_interruptions

    s = clean()
    s.values["audio_packets_in"][:] = 50.0
    s.values["audio_packets_in"][0] = 20.0  # the call starting part-way through its first sample
    s.values["audio_packets_in"][N - 1] = 10.0  # and ending part-way through its last
    s.values["audio_packets_in"][300] = 35.0  # media stopped 0.7 s into sample 300
    s.values["audio_packets_in"][301] = 20.0  # and came back 0.6 s into sample 301: no sample was empty
    s.values["audio_packets_in"][500] = 40.0  # random loss: short, not an interruption
    s.values["audio_packets_in"][501] = 44.0
    ev = detect_interruptions(s, CFG)
    assert [(sec(e.start_ms), sec(e.end_ms)) for e in ev] == [(300.7, 301.6)]


def test_a_cut_spanning_three_samples_with_none_empty_is_one_interruption() -> None:
    """A 1.6 s cut from 0.7 s into sample 300 to 0.3 s before the end of sample 302: sample 301
    ends short of packets (its 9 came after the resume), sample 302 starts 0.16 s short from
    random loss. Read as a stop, sample 301 would place a second gap overlapping the first."""
    from server.analysis.events import detect_interruptions

    s = clean()
    s.values["audio_packets_in"][:] = 50.0
    s.values["audio_packets_in"][0] = 20.0
    s.values["audio_packets_in"][N - 1] = 10.0
    s.values["audio_packets_in"][300] = 35.0  # media stopped 0.7 s into sample 300
    s.values["audio_packets_in"][301] = 15.0  # came back 0.3 s before its end
    s.values["audio_packets_in"][302] = 42.0  # 8 lost at random
    ev = detect_interruptions(s, CFG)
    assert [(sec(e.start_ms), sec(e.end_ms)) for e in ev] == [(300.7, 301.7)]


def test_audio_dropouts_placed_to_the_sub_second_and_merged_only_where_they_touch() -> None:
    s = clean()
    s.values["concealed_ratio_in"][:] = 0.01  # jitter's usual concealment
    s.values["concealed_ratio_in"][100] = 0.3  # an outage began 0.7 s into sample 100
    s.values["concealed_ratio_in"][101:104] = 1.0
    s.values["concealed_ratio_in"][104] = 0.45  # and ended 0.45 s into sample 104
    s.values["concealed_ratio_in"][106] = 0.5  # half a second of concealment two samples on: its own
    s.values["concealed_ratio_in"][300:302] = 1.0  # fully concealed edges continue into the neighbours
    s.values["concealed_ratio_in"][299] = 0.05
    ev = detect_audio_dropouts(s, AnalysisConfig(audio_min_ms=400))
    got = [(sec(e.start_ms), sec(e.end_ms)) for e in ev]
    assert got == [(100.7, 104.45), (106.25, 106.75), (299.95, 302.01)]


def test_concealment_while_playout_starts_is_no_dropout() -> None:
    """The receiver's first audio arrives mid-sample: that sample's concealment
    (connection set-up, the jitter buffer filling) is no dropout; from the next
    sample, a whole interval of playout, concealment counts again."""
    s = clean(20)
    s.values["audio_packets_in"][:] = 50.0
    s.values["audio_packets_in"][:2] = [0.0, 20.0]  # playout starts in sample 1
    s.values["concealed_ratio_in"][:3] = [np.nan, 1.0, 0.01]  # a whole second concealed, counted from zero
    assert detect_audio_dropouts(s, CFG) == []
    s.values["concealed_ratio_in"][2:4] = 0.6  # right after playout started: a dropout
    ev = detect_audio_dropouts(s, CFG)
    assert [(sec(e.start_ms), sec(e.end_ms), e.severity) for e in ev] == [(2.4, 3.6, 1.2)]
    # Without audio packet counts, the first sample with a concealment figure starts playout.
    s.values["audio_packets_in"][:] = np.nan
    s.values["concealed_ratio_in"][:4] = [np.nan, 1.0, 0.01, 0.01]
    assert detect_audio_dropouts(s, CFG) == []


def test_interruption_edges_from_the_receivers_packet_stamps() -> None:
    """With ``last_packet_in_ms`` the stop is the last packet's own stamp and the resume is
    counted back from the resume sample's last packet, not from the sample's end; without
    it (or with a stamp outside its own sample) the packet counts place both edges."""
    from server.analysis.events import detect_interruptions

    s = clean()
    s.values["last_packet_in_ms"][:] = s.t_ms + 990.0  # the last packet 10 ms before each poll
    s.values["audio_packets_in"][:] = 50.0
    s.values["audio_packets_in"][100] = 30.0  # 30 packets: 0.6 s by the counts
    s.values["last_packet_in_ms"][100] = T0 + 100_655  # the last packet before the cut
    s.values["no_media_in"][101:104] = 1.0
    s.values["audio_packets_in"][101:104] = 0.0
    s.values["last_packet_in_ms"][101:104] = T0 + 100_655  # polled in the silence: the same packet
    s.values["audio_packets_in"][104] = 20.0  # 20 packets, the last 30 ms before the poll
    s.values["last_packet_in_ms"][104] = T0 + 104_970
    ev = detect_interruptions(s, CFG)
    # Resume: 104.97 s less 19 packet times of 20 ms.
    assert [(sec(e.start_ms), sec(e.end_ms)) for e in ev] == [(100.655, 104.59)]
    # A stamp outside its own sample (an old packet of a replaced track) is no stamp: counts.
    s.values["last_packet_in_ms"][100] = T0 + 98_000
    s.values["last_packet_in_ms"][104] = np.nan
    assert [(sec(e.start_ms), sec(e.end_ms)) for e in detect_interruptions(s, CFG)] == [(100.6, 104.6)]


def test_a_cut_across_a_sample_boundary_placed_from_the_stamps() -> None:
    from server.analysis.events import detect_interruptions

    s = clean()
    s.values["last_packet_in_ms"][:] = s.t_ms + 995.0
    s.values["audio_packets_in"][:] = 50.0
    s.values["audio_packets_in"][0] = 20.0
    s.values["audio_packets_in"][N - 1] = 10.0
    s.values["audio_packets_in"][300] = 35.0  # 0.7 s by the counts; the stamp says 0.72 s
    s.values["last_packet_in_ms"][300] = T0 + 300_720
    s.values["audio_packets_in"][301] = 20.0  # 20 packets, the last 50 ms before the poll
    s.values["last_packet_in_ms"][301] = T0 + 301_950
    s.values["audio_packets_in"][500] = 40.0  # random loss: short, not an interruption
    s.values["audio_packets_in"][501] = 44.0
    ev = detect_interruptions(s, CFG)
    assert [(sec(e.start_ms), sec(e.end_ms)) for e in ev] == [(300.72, 301.57)]
