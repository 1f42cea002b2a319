"""Client course: reliable-change rupture flags, the forming phase, suggestions."""

from __future__ import annotations

import math

import pytest

from server.analysis.course import CourseInput, analyse_course, rci_threshold, reference_sd
from server.config import AnalysisConfig

CFG = AnalysisConfig()


def item(n: int, bond: float | None, disrupted: int = 0) -> CourseInput:
    return CourseInput(n, n, None, disrupted, 50, "good", bond, None, None, None)


def test_rci_threshold_formula() -> None:
    # Jacobson & Truax: 1.96 x sqrt(2) x SD x sqrt(1 - r).
    assert rci_threshold(0.5, 0.8, 1.96) == pytest.approx(1.96 * math.sqrt(2) * 0.5 * math.sqrt(0.2))
    assert rci_threshold(0.5, 0.8, 1.96) == pytest.approx(0.6198, abs=1e-4)


def test_reference_sd_needs_enough_ratings() -> None:
    assert reference_sd([3.0] * 9 + [4.0], AnalysisConfig(rci_min_ratings=11)) is None
    assert reference_sd([3.0, 4.0] * 5, CFG) == pytest.approx(0.5270, abs=1e-4)


def test_rupture_flagged_only_beyond_threshold_and_disruption_noted() -> None:
    caseload = [3.0, 4.0] * 5  # SD 0.527 -> threshold 1.96 * sqrt(2) * 0.527 * sqrt(0.2) = 0.653
    course = analyse_course(
        [item(1, 4.0), item(2, 4.0), item(3, 3.5, disrupted=1), item(4, 3.1, disrupted=8), item(5, 4.0),
         item(6, None), item(7, 4.0, disrupted=6)],
        caseload, CFG,
    )
    assert course.threshold == pytest.approx(0.65, abs=0.01)
    rows = course.rows
    assert [r.rupture for r in rows] == [False, False, False, True, False, False, False]
    # Session 4: running level = mean(4.0, 4.0, 3.5) = 3.83; 3.83 - 3.1 = 0.73 > 0.65.
    assert rows[3].running_level == pytest.approx(3.83, abs=0.01)
    assert rows[3].drop == pytest.approx(0.73, abs=0.01)
    assert rows[3].disrupted and not rows[2].disrupted
    assert [r.early for r in rows] == [True] * 5 + [False] * 2
    assert "Session 7 had 6 disrupted minutes" in course.suggestion


def test_drop_just_over_threshold_flags_and_suggests_naming_the_problems() -> None:
    caseload = [3.0, 4.0] * 5
    course = analyse_course([item(1, 4.0), item(2, 4.0), item(3, 3.0, disrupted=9)], caseload, CFG)
    last = course.rows[-1]
    assert last.rupture and last.drop == pytest.approx(1.0)
    assert "naming the connection problems" in course.suggestion
    assert "first 5 sessions" in course.suggestion


def test_rupture_without_disruption_suggests_relationship_check_in() -> None:
    course = analyse_course([item(k, 4.2) for k in range(1, 7)] + [item(7, 3.0)], [3.0, 4.0] * 5, CFG)
    assert course.rows[-1].rupture and not course.rows[-1].disrupted
    assert "without notable connection problems" in course.suggestion


def test_without_reference_sd_nothing_is_flagged_and_page_says_so() -> None:
    course = analyse_course([item(1, 4.5), item(2, 1.0, disrupted=9)], [4.5, 1.0], CFG)
    assert course.threshold is None
    assert not any(r.rupture for r in course.rows)
    assert "not assessed yet" in course.suggestion
