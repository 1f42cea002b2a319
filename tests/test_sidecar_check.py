"""The connection check's verdict rule (server/sidecar/check.py) on known figures."""

from __future__ import annotations

from typing import Any

import pytest

from server.sidecar.check import (
    ASPECTS,
    NOT_MEASURED,
    TIP_BROWSER,
    TIP_NETWORK,
    TIP_SOUND,
    TIP_VPN,
    TIP_WIFI,
    WORDS,
    CheckFigures,
    figures_from,
    judge,
)


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
               "video": {"received": 50, "freezeMs": 250.0}, "audio": {"blocks": 500, "heard": 490, "gapMs": 200.0}}
    participant = {"pings": {"lossFraction": 0.03}, "video": {"received": 50, "freezeMs": 0.0},
                   "audio": {"blocks": 500, "heard": 500, "gapMs": 0}}
    f = figures_from(sidecar, participant, 10.0, connected=True)
    assert (f.rtt_p95_ms, f.loss_up, f.loss_down, f.freeze_ms_up, f.audio_gap_up) == (30.0, 0.01, 0.03, 250.0, 0.02)
    assert judge(f).level == "fair" and judge(f).reasons == ["loss"] and judge(f).missing == []
    assert figures_from(sidecar, None, 10.0, connected=True).loss_down is None


SIDECAR = {"pings": {"rttMedianMs": 12.0, "rttP95Ms": 30.0, "lossFraction": 0.0},
           "video": {"received": 50, "freezeMs": 0.0}, "audio": {"blocks": 500, "heard": 500, "gapMs": 0.0}}
PARTICIPANT = {"pings": {"lossFraction": 0.0}, "video": {"received": 50, "freezeMs": 0.0},
               "audio": {"blocks": 500, "heard": 500, "gapMs": 0.0}}


def test_all_measured_and_clean_is_good() -> None:
    v = judge(figures_from(SIDECAR, PARTICIPANT, 10.0, connected=True))
    assert (v.level, v.missing) == ("good", [])
    assert v.grades == dict.fromkeys(ASPECTS, "good")


@pytest.mark.parametrize("name", [n for names in ASPECTS.values() for n in names])
def test_any_missing_figure_rules_out_good(name: str) -> None:
    v = judge(good(**{name: None}))
    assert v.level == "incomplete" and v.words == WORDS["incomplete"], v
    assert v.missing == [name]
    aspect = next(a for a, names in ASPECTS.items() if name in names)
    assert v.grades[aspect] == NOT_MEASURED and v.tips, v


def test_no_participant_summary_is_not_measured() -> None:
    v = judge(figures_from(SIDECAR, None, 10.0, connected=True))
    assert v.level == "incomplete"
    assert v.missing == ["loss_down", "freeze_ms_down", "audio_gap_down"]
    assert TIP_BROWSER in v.tips and TIP_SOUND in v.tips


def test_pilot_never_synchronised_is_not_measured() -> None:
    # The browser's pilot reader never locked on: no block read, so no gap was measured.
    participant: dict[str, Any] = {**PARTICIPANT, "audio": {"blocks": 0, "heard": 0, "gapMs": 0, "synced": False}}
    v = judge(figures_from(SIDECAR, participant, 10.0, connected=True))
    assert v.level == "incomplete" and v.missing == ["audio_gap_down"]
    assert v.grades["sound"] == NOT_MEASURED and v.tips[0] == TIP_SOUND


def test_no_video_frame_is_not_measured() -> None:
    # No frame arrived: a freeze total of 0 ms is the absence of a figure, not a clean picture.
    sidecar: dict[str, Any] = {**SIDECAR, "video": {"received": 0, "freezeMs": 0.0}}
    v = judge(figures_from(sidecar, PARTICIPANT, 10.0, connected=True))
    assert v.level == "incomplete" and v.missing == ["freeze_ms_up"]
    assert v.grades["freezes"] == NOT_MEASURED and TIP_BROWSER in v.tips


def test_no_pings_is_not_measured() -> None:
    sidecar: dict[str, Any] = {**SIDECAR, "pings": {}}
    v = judge(figures_from(sidecar, PARTICIPANT, 10.0, connected=True))
    assert v.level == "incomplete" and v.missing == ["rtt_p95_ms", "loss_up"]
    assert TIP_NETWORK in v.tips


def test_measured_poor_stands_when_another_figure_is_missing() -> None:
    v = judge(good(loss_up=0.2, audio_gap_down=None))
    assert v.level == "poor" and v.words.startswith(WORDS["poor"]) and "could not be measured" in v.words
    assert v.missing == ["audio_gap_down"] and v.tips[0] == TIP_SOUND
