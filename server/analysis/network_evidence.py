"""Network evidence around an audio dropout: did anything besides concealment
show the network between sender and receiver misbehaving?

Concealment alone does not say whose fault it was: a receiving device or
browser whose CPU paused conceals audio too, with every packet on time. The
attribution rules (server/analysis/attribution.py) name no connection for
an audio dropout that has no evidence here nor lossy loss figures. Rules and
their reasons: docs/methodology.md ("Whose connection", "Network evidence").
"""

from __future__ import annotations

import math

import numpy as np

from server.analysis.legs import LegSeries
from server.config import AnalysisConfig

# A round trip this much above the lowest one around the event: a queue
# building on the path, more than a jitter buffer's usual 20-80 ms target absorbs.
RTT_RISE_MS = 100.0
# Inbound jitter at or above this (ITU-T G.1010's bound for conversational voice).
JITTER_MS = 30.0
# New packets per second below this share of the receiver's usual rate: packets late or missing.
RATE_SHARE = 0.8

# (figure, reported_by, about, value, unit): the fields of attribution.Evidence.
Found = tuple[str, str, str, float | None, str]


def _finite(a: np.ndarray) -> np.ndarray:
    return a[~np.isnan(a)]


def network_evidence(legs: dict[str, LegSeries], cfg: AnalysisConfig, r: str, s: str, a: int,
                     b: int) -> list[Found]:
    """What shows the network between sender ``s`` and receiver ``r`` misbehaved
    over [a, b), besides the media's own loss: the receiver's outgoing media
    reported lossy by its far end (the other direction), a round trip at or
    above ``cfg.rtt_ms`` or RTT_RISE_MS above the lowest of the samples read,
    inbound jitter of JITTER_MS or more, or new packets arriving at less than
    RATE_SHARE of the receiver's usual rate. Empty when nothing does."""
    out: list[Found] = []
    leg = legs.get(r)
    if leg is not None:
        w = leg.window(a, b)
        lost, sent = _finite(leg.values["out_lost"][w]), _finite(leg.values["out_sent"][w])
        if lost.size and sent.size and sent.sum() > 0 and lost.sum() / sent.sum() >= cfg.loss_fraction:
            out.append(("remote_inbound_loss", s, f"the {r}'s outgoing media as the far end received it",
                        round(float(lost.sum() / sent.sum()), 4), "fraction"))
    for role in (r, s):
        leg = legs.get(role)
        if leg is None:
            continue
        # Against the lowest round trip of the samples read around the event
        # (from merge_gap_ms before it to report_lag_ms after it).
        rtt = leg.values["out_rtt_ms"]
        cur, base = _finite(rtt[leg.window(a, b)]), _finite(rtt)
        if cur.size and (cur.max() >= cfg.rtt_ms or cur.max() - base.min() >= RTT_RISE_MS):
            out.append(("rtt", role, f"the {role}'s round trip, as its far end's reports gave it",
                        float(cur.max()), "ms"))
    leg = legs.get(r)
    if leg is not None:
        w = leg.window(a, b)
        jit = _finite(leg.values["in_jitter_ms"][w])
        if jit.size and jit.max() >= JITTER_MS:
            out.append(("jitter_in", r, f"jitter of the media as the {r} received it", float(jit.max()), "ms"))
        rate = leg.values["in_rx"] / np.maximum(leg.end_ms - leg.t_ms, 1)
        usual, here = _finite(rate), _finite(rate[w])
        median = float(np.median(usual)) if usual.size else math.nan
        if here.size and median > 0 and float(here.min()) / median < RATE_SHARE:
            out.append(("packets_in", r, f"new packets the {r} received, per its usual rate",
                        round(float(here.min()) / median, 3), "fraction"))
    return out
