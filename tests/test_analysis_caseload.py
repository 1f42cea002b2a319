"""Caseload model and correlations against data generated with a known effect."""

from __future__ import annotations

import numpy as np
import pytest

from server.analysis.caseload import Point, correlation, fit_model
from server.config import AnalysisConfig
from server.demo.plan import WAI_BOND, RatingModel, plan_caseload

CFG = AnalysisConfig()
SEEDS = range(1, 11)


def points(seed: int, effect: float, clients: int = 10) -> list[Point]:
    """One clinician's caseload from the demo generator: disruption is the
    planted disrupted minutes, the rating the scored WAI-SR bond mean."""
    plan = plan_caseload(seed, clinicians=1, clients_per_clinician=clients, model=RatingModel(effect=effect))
    out: list[Point] = []
    for ci, client in enumerate(plan[0].clients):
        for s in client.sessions:
            answers = s.answers.get(("client", "wai-sr-client"))
            if answers:
                bond = sum(int(answers[i] or 0) for i in WAI_BOND) / len(WAI_BOND)
                out.append(Point(len(out), ci, s.number, float(s.disrupted_minutes), bond))
    return out


def test_known_effect_is_recovered_within_the_interval_in_most_seeds() -> None:
    effect = -0.04
    covered = distinguishable = 0
    for seed in SEEDS:
        m = fit_model(points(seed, effect), CFG)
        assert m.ok and m.converged, m.message
        w = m.coef("within")
        covered += w.ci_low <= effect <= w.ci_high
        distinguishable += w.ci_high < 0
    # A 95% interval should cover the truth in about 9.5 of 10 seeds.
    assert covered >= 8, covered
    assert distinguishable >= 8, distinguishable


def test_no_effect_is_reported_as_none_in_most_seeds() -> None:
    covered = 0
    for seed in SEEDS:
        w = fit_model(points(seed, 0.0), CFG).coef("within")
        covered += w.ci_low <= 0.0 <= w.ci_high
    assert covered >= 8, covered


def test_model_reports_terms_and_n() -> None:
    m = fit_model(points(3, -0.04), CFG)
    assert [c.name for c in m.coefficients] == ["intercept", "within", "between", "session"]
    assert m.n_clients == 10 and m.n_sessions > 100
    # The generator's session slope is +0.02 per session.
    s = m.coef("session")
    assert s.ci_low <= 0.02 <= s.ci_high
    assert m.client_sd is not None and m.residual_sd is not None


def test_too_little_data_says_so_instead_of_a_number() -> None:
    few = points(1, -0.04)[:12]
    m = fit_model(few, CFG)
    assert not m.ok and m.coefficients == []
    assert m.message.startswith("Not enough data for the model")
    two_clients = [p for p in points(1, -0.04) if p.client_id < 2]
    assert not fit_model(two_clients, CFG).ok


def test_no_within_client_variation_is_not_estimable() -> None:
    pts = [Point(i, i % 5, i // 5 + 1, float(i % 5), 3.0 + 0.1 * (i % 3)) for i in range(40)]
    m = fit_model(pts, CFG)
    assert not m.ok and "within a client" in m.message


def test_correlation_with_interval_on_known_data() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=400)
    y = 0.5 * x + rng.normal(scale=np.sqrt(1 - 0.25), size=400)  # true r = 0.5
    c = correlation("k", x.tolist(), y.tolist(), CFG)
    assert c.r is not None and c.ci_low is not None and c.ci_high is not None
    assert c.ci_low < 0.5 < c.ci_high
    assert c.ci_high - c.ci_low < 0.2
    small = correlation("k", [1.0, 2.0, 3.0], [1.0, 2.0, 2.5], CFG)
    assert small.r is None and "not enough data" in small.message


def test_ci_matches_fisher_z() -> None:
    x = [float(v) for v in range(20)]
    y = [v + (1.5 if i % 2 else -1.5) for i, v in enumerate(x)]
    c = correlation("k", x, y, CFG)
    assert c.r is not None
    z, se = np.arctanh(c.r), 1 / np.sqrt(20 - 3)
    assert c.ci_low == pytest.approx(np.tanh(z - 1.959964 * se), abs=1e-4)
    assert c.ci_high == pytest.approx(np.tanh(z + 1.959964 * se), abs=1e-4)
