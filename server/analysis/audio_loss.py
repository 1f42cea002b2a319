"""Lost audio per sample, outages included.

Chromium counts lost audio packets only between packets it received; after
a gap longer than about a second it restarts the receive stream and the
gap's packets are never counted (docs/telemetry.md); a gap that straddles
two samples never even shows as a sample without media. Concealment does
see the gap: the playout keeps producing samples, concealed ones, for as
long as nothing arrives. So the fraction of an interval's audio that was
lost is the packet-loss fraction or the concealed fraction, whichever is
more (either alone where the other is missing). Definition:
docs/methodology.md ("Lost audio").
"""

from __future__ import annotations

import numpy as np

from server.analysis.series import FloatArray, ParticipantSeries


def audio_lost_fraction(s: ParticipantSeries) -> FloatArray:
    """Per sample: the fraction of the interval's audio that was lost (NaN: unknown)."""
    return np.asarray(np.fmax(s.col("audio_loss_in"), s.col("concealed_ratio_in")), dtype=np.float64)


def audio_lost_s(s: ParticipantSeries) -> float | None:
    """Seconds of audio lost over the series (None when nothing tells)."""
    f = audio_lost_fraction(s)
    ok = np.isfinite(f)
    return float((f[ok] * s.interval_ms[ok]).sum() / 1000) if ok.any() else None
