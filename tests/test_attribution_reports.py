"""Whose connection in the reports: plain words, the course share, the split
caseload model against a known truth, and one disruption read as one."""

from __future__ import annotations

import os
import random

import numpy as np

from server.analysis.attribution import Attribution, Evidence, Leg, incidents, side_minutes
from server.analysis.caseload import Point, fit_model, fit_split_model
from server.analysis.course import CourseInput, analyse_course
from server.analysis.events import Disruption
from server.config import AnalysisConfig
from server.reports.plain import incident_sentence, sides_clause

CFG = AnalysisConfig()
T0 = 1_795_000_000_000
SEED = int(os.environ.get("BONDLINE_ATTRIBUTION_SEED", random.SystemRandom().randrange(2**31)))


def _at(verdict: str, legs: tuple[Leg, ...] = (), loss: float | None = None, sender: str | None = None,
        receiver: str | None = None) -> Attribution:
    return Attribution(verdict, "peer", legs, sender, receiver, loss, [Evidence("loss_in", "clinician", "x", loss, "")])


def test_plain_words_name_the_side_and_direction() -> None:
    ev = [Disruption("loss_burst", "clinician", 2, "in", T0 + 185_000, T0 + 305_000, 9.0)]
    inc = incidents(ev, [_at("uplink", (Leg("client", "up"),), 0.09, "client", "clinician")], CFG.merge_gap_ms)
    assert incident_sentence(inc[0], T0, CFG.loss_fraction).text == (
        "The client's connection (sending) lost 9% of packets from 3:05 to 5:05; seen as a packet-loss burst (you).")
    inc = incidents(ev, [_at("downlink", (Leg("clinician", "down"),), 0.004)], CFG.merge_gap_ms)
    assert incident_sentence(inc[0], T0, CFG.loss_fraction).text == (
        "Your connection (receiving): trouble from 3:05 to 5:05; seen as a packet-loss burst (you).")
    assert sides_clause({"client": 3, "clinician": 1, "between": 2, "undetermined": 0}, 6) == (
        "of those, 3 on the client's connection, 1 on yours and 2 between the two (not separable peer to peer)")
    assert sides_clause({"client": 0, "clinician": 0, "between": 0, "undetermined": 0}, 0) is None


def test_an_outage_both_sides_saw_is_one_disruption() -> None:
    # Each side froze, lost audio and reconnected: six events, one disruption.
    ev = [Disruption(k, role, pid, d, T0 + 60_000 + off, T0 + 66_000 + off, 1.0)
          for role, pid, off in (("client", 1, 0), ("clinician", 2, 300))
          for k, d in (("video_freeze", "in"), ("audio_dropout", "in"), ("reconnect", "connection"))]
    attrs = [_at("both", (Leg("client", "both"),)) if e.kind == "reconnect" and e.role == "client"
             else _at("between", sender="x", receiver="y") for e in ev]
    inc = incidents(ev, attrs, CFG.merge_gap_ms)
    assert len(inc) == 1 and len(inc[0].events) == 6 and inc[0].legs == [Leg("client", "both")]
    text = incident_sentence(inc[0], T0, CFG.loss_fraction).text
    assert text.startswith("The client's connection (both ways): trouble from 1:00 to 1:06")
    assert text.count("a video freeze") == 2 and "(the client)" in text and "(you)" in text
    # A minute counts once however many events fall in it.
    assert side_minutes(ev, attrs, T0, 3) == {"client": 1, "clinician": 0, "between": 0, "undetermined": 0}


def test_course_share_on_the_clients_side() -> None:
    items = [CourseInput(i, i, None, d, 50, "fair", None, None, None, None, sides)
             for i, d, sides in ((1, 4, {"client": 3, "clinician": 1, "between": 0, "undetermined": 0}),
                                 (2, 0, {"client": 0, "clinician": 0, "between": 0, "undetermined": 0}),
                                 (3, 6, {"client": 2, "clinician": 0, "between": 4, "undetermined": 0}),
                                 (4, 5, None))]  # not attributed: left out of the share
    course = analyse_course(items, [], CFG)
    assert course.disrupted_total == 10 and course.side_totals == {"client": 5, "clinician": 1, "between": 4,
                                                                   "undetermined": 0}
    assert (course.client_share_pct, course.clinician_share_pct) == (50.0, 10.0)


def _caseload(rng: np.random.Generator, effect_clinician: float) -> list[Point]:
    points = []
    for client in range(8):
        level = rng.normal(3.8, 0.4)
        for n in range(1, 9):
            c, k, b = rng.poisson(3), rng.poisson(3), rng.poisson(2)
            rating = level + effect_clinician * k + 0.01 * n + rng.normal(0, 0.15)
            points.append(Point(client * 100 + n, client, n, float(c + k + b), float(rating), float(c), float(k)))
    return points


def test_split_model_finds_the_side_that_matters() -> None:
    """Ratings that fall with minutes on the clinician's connection only
    (-0.05 a minute): the split model's interval for that side covers the
    truth and excludes zero; the client side's covers zero, in most seeds."""
    print(f"BONDLINE_ATTRIBUTION_SEED={SEED}")
    covered = excluded = client_zero = 0
    for i in range(10):
        pts = _caseload(np.random.default_rng([SEED, i]), -0.05)
        m = fit_split_model(pts, CFG)
        assert m.ok, m.message
        k, c = m.coef("within_clinician_side"), m.coef("within_client_side")
        covered += k.ci_low <= -0.05 <= k.ci_high
        excluded += k.ci_high < 0
        client_zero += c.ci_low <= 0 <= c.ci_high
        # The main model is unchanged by the split.
        assert [x.name for x in fit_model(pts, CFG).coefficients] == ["intercept", "within", "between", "session"]
    assert covered >= 8 and excluded >= 8 and client_zero >= 8, (covered, excluded, client_zero)


def test_split_model_says_when_sessions_are_not_attributed() -> None:
    pts = [Point(i, i % 4, i, 1.0 + i % 3, 3.0) for i in range(30)]
    m = fit_split_model(pts, CFG)
    assert not m.ok and "0 from 0 clients" in m.message
