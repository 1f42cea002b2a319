"""E-model voice quality estimate: formulas, branches and, above all, units."""

from __future__ import annotations

import math

import numpy as np
import pytest

from server.analysis import emodel
from server.config import AnalysisConfig

CFG = AnalysisConfig()


def test_effective_latency_uses_one_way_delay_by_default() -> None:
    # RTT 40 -> one way 20; + 2 x 5 ms jitter + 10 ms codec = 40 ms.
    assert emodel.effective_latency_ms(40.0, 5.0, CFG) == pytest.approx(40.0)
    rtt_cfg = AnalysisConfig(emodel_delay="rtt")
    assert emodel.effective_latency_ms(40.0, 5.0, rtt_cfg) == pytest.approx(60.0)


def test_r_factor_low_and_high_delay_branches() -> None:
    # Below 160 ms: R = 93.2 - latency / 40.
    assert emodel.r_factor(40.0, 5.0, 0.0, CFG) == pytest.approx(93.2 - 40.0 / 40.0)
    # From 160 ms: R = 93.2 - (latency - 120) / 10; RTT 400 -> 200 + 40 + 10 = 250 ms.
    assert emodel.r_factor(400.0, 20.0, 0.0, CFG) == pytest.approx(93.2 - 13.0)


def test_loss_is_a_fraction_and_costs_2_5_points_per_percent() -> None:
    base = float(emodel.r_factor(40.0, 5.0, 0.0, CFG))
    one_percent = float(emodel.r_factor(40.0, 5.0, 0.01, CFG))
    assert base - one_percent == pytest.approx(2.5)
    five_percent = float(emodel.r_factor(40.0, 5.0, 0.05, CFG))
    assert base - five_percent == pytest.approx(12.5)


def test_percent_passed_as_fraction_is_not_silently_similar() -> None:
    # The classic bug: 1 (meaning 1 %) passed where a fraction is wanted reads
    # as 100 % loss. Our API takes fractions, so 1 % must be 0.01.
    right = float(emodel.mos(40.0, 5.0, 0.01, CFG))
    wrong = float(emodel.mos(40.0, 5.0, 1.0, CFG))
    assert right == pytest.approx(4.3316, abs=1e-3)
    assert wrong == 1.0


def test_mos_from_r_anchor_values() -> None:
    # G.107: MOS = 1 + 0.035 R + 7e-6 R (R - 60)(100 - R).
    assert float(emodel.mos_from_r(50.0)) == pytest.approx(1 + 1.75 + 7e-6 * 50 * -10 * 50)
    assert float(emodel.mos_from_r(89.7)) == pytest.approx(1 + 0.035 * 89.7 + 7e-6 * 89.7 * 29.7 * 10.3)
    assert float(emodel.mos_from_r(93.2)) == pytest.approx(4.41, abs=0.01)
    assert float(emodel.mos_from_r(-5.0)) == 1.0
    assert float(emodel.mos_from_r(0.0)) == 1.0
    assert float(emodel.mos_from_r(100.0)) == 4.5
    assert float(emodel.mos_from_r(120.0)) == 4.5


def test_vectorised_and_missing_values_stay_missing() -> None:
    rtt = np.array([40.0, np.nan, 400.0])
    jit = np.array([5.0, 5.0, 20.0])
    loss = np.array([0.0, 0.0, 0.02])
    out = emodel.mos(rtt, jit, loss, CFG)
    assert out.shape == (3,)
    assert math.isnan(out[1])
    assert out[0] > out[2] > 1.0


def test_config_refuses_inconsistent_thresholds() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="window_k"):
        AnalysisConfig(window_k=6, window_n=5)
    assert AnalysisConfig(rtt_ms=300).fingerprint() != CFG.fingerprint()
