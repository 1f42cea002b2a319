"""Voice quality estimate: the simplified ITU-T G.107 E-model, R to MOS.

docs/methodology.md ("Voice quality estimate") has the derivation and the
choices. The public functions take packet loss as a FRACTION (0..1), the
unit of every loss figure Bondline stores, and convert to the percent the
formula wants in one place: passing percent where a fraction is expected (or
the reverse) is the classic bug in open implementations of this formula.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from server.config import AnalysisConfig

FloatArray = NDArray[np.float64]


def effective_latency_ms(rtt_ms: ArrayLike, jitter_ms: ArrayLike, cfg: AnalysisConfig) -> FloatArray:
    """Delay term of the model: delay + jitter factor x jitter + codec delay.

    With ``emodel_delay == "one_way"`` the delay is RTT / 2: G.107's delay
    impairment is defined on the one-way (mouth-to-ear) delay, and WebRTC
    only measures the round trip, so a symmetric path is assumed.
    """
    rtt = np.asarray(rtt_ms, dtype=np.float64)
    delay = rtt / 2.0 if cfg.emodel_delay == "one_way" else rtt
    return delay + cfg.emodel_jitter_factor * np.asarray(jitter_ms, dtype=np.float64) + cfg.emodel_codec_ms


def r_factor(rtt_ms: ArrayLike, jitter_ms: ArrayLike, loss_fraction: ArrayLike, cfg: AnalysisConfig) -> FloatArray:
    """Transmission rating R from RTT (ms), jitter (ms) and loss (fraction 0..1)."""
    latency = effective_latency_ms(rtt_ms, jitter_ms, cfg)
    r = np.where(latency < 160.0, cfg.emodel_r0 - latency / 40.0, cfg.emodel_r0 - (latency - 120.0) / 10.0)
    loss_percent = 100.0 * np.asarray(loss_fraction, dtype=np.float64)
    return np.asarray(r - cfg.emodel_loss_per_percent * loss_percent, dtype=np.float64)


def mos_from_r(r: ArrayLike) -> FloatArray:
    """G.107 Annex B: MOS = 1 + 0.035R + 7e-6 R (R - 60)(100 - R), 1 below R = 0, 4.5 above 100."""
    rr = np.asarray(r, dtype=np.float64)
    mos = 1.0 + 0.035 * rr + 7e-6 * rr * (rr - 60.0) * (100.0 - rr)
    mos = np.where(rr <= 0.0, 1.0, mos)
    mos = np.where(rr >= 100.0, 4.5, mos)
    return np.asarray(mos, dtype=np.float64)


def mos(rtt_ms: ArrayLike, jitter_ms: ArrayLike, loss_fraction: ArrayLike, cfg: AnalysisConfig) -> FloatArray:
    """Estimated listening MOS (1..4.5); NaN wherever an input is missing."""
    return mos_from_r(r_factor(rtt_ms, jitter_ms, loss_fraction, cfg))
