"""The connection check's verdict rule (server/sidecar/check.py) on known figures."""

from __future__ import annotations

from server.sidecar.check import TIP_NETWORK, TIP_VPN, TIP_WIFI, WORDS, CheckFigures, figures_from, judge


def good(**changes: object) -> CheckFigures:
    base = dict(connected=True, duration_s=10.0, rtt_median_ms=20.0, rtt_p95_ms=40.0, loss_up=0.0, loss_down=0.0,
                freeze_ms_up=0.0, freeze_ms_down=0.0, audio_gap_up=0.0, audio_gap_down=0.0)
    base.update(changes)
    return CheckFigures(**base)  # type: ignore[arg-type]


def test_clean_path_is_good_with_no_tips() -> None:
    v = judge(good())
    assert (v.level, v.words, v.tips, v.reasons) == ("good", WORDS["good"], [], [])


def test_each_figure_grades_at_its_limits() -> None:
    assert judge(good(rtt_p95_ms=300.0)).level == "good"
    assert judge(good(rtt_p95_ms=301.0)).level == "fair"
    assert judge(good(rtt_p95_ms=501.0)).level == "poor"
    assert judge(good(loss_down=0.02)).level == "good"
    assert judge(good(loss_up=0.021)).level == "fair"
    assert judge(good(loss_down=0.051)).level == "poor"
    assert judge(good(freeze_ms_up=600.0)).level == "fair"
    # Freezes are judged per 10 s: 1 s of freezes in a 20 s check is 0.5 s per 10 s.
    assert judge(good(freeze_ms_down=1000.0, duration_s=20.0)).level == "good"
    assert judge(good(audio_gap_down=0.06)).level == "poor"


def test_tips_follow_the_reasons() -> None:
    delay = judge(good(rtt_p95_ms=450.0))
    assert delay.reasons == ["delay"] and delay.tips[0] == TIP_VPN and TIP_WIFI in delay.tips
    loss = judge(good(loss_up=0.08, freeze_ms_down=3000.0))
    assert loss.level == "poor" and set(loss.reasons) == {"loss", "freezes"}
    assert TIP_WIFI in loss.tips and 2 <= len(loss.tips) <= 3
    failed = judge(CheckFigures(connected=False))
    assert failed.level == "failed" and failed.tips == [TIP_NETWORK, TIP_VPN]


def test_figures_from_both_ends_summaries() -> None:
    sidecar = {"pings": {"rttMedianMs": 12.0, "rttP95Ms": 30.0, "lossFraction": 0.01},
               "video": {"freezeMs": 250.0}, "audio": {"blocks": 500, "gapMs": 200.0}}
    participant = {"pings": {"lossFraction": 0.03}, "video": {"freezeMs": 0.0}, "audio": {"blocks": 500, "gapMs": 0}}
    f = figures_from(sidecar, participant, 10.0, connected=True)
    assert (f.rtt_p95_ms, f.loss_up, f.loss_down, f.freeze_ms_up, f.audio_gap_up) == (30.0, 0.01, 0.03, 250.0, 0.02)
    assert judge(f).level == "fair" and judge(f).reasons == ["loss"]
    assert figures_from(sidecar, None, 10.0, connected=True).loss_down is None
