"""Second-by-second ``bondline.sample/1`` samples for a planned session.

The figures are drawn per second with NumPy (counters as per-interval
deltas, as a browser collector sends them), then turned into sample dicts
of exactly the shape real ingest stores; ``build`` derives the typed
columns with ingest's own ``headline()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from server.demo.plan import Episode

AUDIO_PPS = 50
VIDEO_PPS = 90
AUDIO_SAMPLES = 48_000
FPS = 20.0



@dataclass
class Figures:
    """Per-second figures of one participant (index = second of the session)."""

    late: NDArray[np.bool_]  # sent late: buffered while this participant's collector was disconnected
    rtt: NDArray[np.float64]
    a_jit: NDArray[np.float64]
    v_jit: NDArray[np.float64]
    a_rx: NDArray[np.int64]
    a_lost: NDArray[np.int64]
    v_rx: NDArray[np.int64]  # includes retransmissions, as in Chromium
    v_rtx: NDArray[np.int64]
    v_lost: NDArray[np.int64]
    concealed: NDArray[np.int64]
    fps: NDArray[np.float64]
    dropped: NDArray[np.int64]
    freeze_ms: NDArray[np.float64]
    a_kbps: NDArray[np.float64]
    v_kbps: NDArray[np.float64]
    out_a_kbps: NDArray[np.float64]
    out_v_kbps: NDArray[np.float64]


def synthesize(rng: np.random.Generator, duration_s: int, episodes: list[Episode],
               base_rtt: float) -> dict[str, Figures]:
    """Figures for both participants; ``inbound`` of a role is what it received."""
    n = duration_s
    rtt = np.abs(base_rtt + rng.normal(0, 3.0, n)) + 1.0
    out: dict[str, Figures] = {}
    for role in ("client", "clinician"):
        loss_a = np.full(n, 0.0005)
        loss_v = np.full(n, 0.0005)
        conceal = np.clip(rng.normal(0.004, 0.003, n), 0, 0.02)
        jit = np.abs(rng.normal(4.0, 1.5, n)) + 1.0
        frozen = np.zeros(n, dtype=bool)
        dead = np.zeros(n, dtype=bool)
        late = np.zeros(n, dtype=bool)
        for e in episodes:
            sl = slice(e.start_s, e.end_s)
            mine = e.side == role  # the episode is on this participant's own network
            if e.kind == "loss_burst":
                lv = e.level if mine else 0.7 * e.level
                loss_a[sl] = lv
                loss_v[sl] = lv
                jit[sl] += rng.uniform(15, 40)
                conceal[sl] = np.clip(lv * 1.2 + rng.normal(0, 0.01, e.end_s - e.start_s), 0, 0.18)
            elif e.kind == "latency_spike":
                jit[sl] += rng.uniform(5, 20)
            elif e.kind == "video_freeze" and mine:
                frozen[sl] = True
                loss_v[sl] = e.level
            elif e.kind == "audio_dropout" and mine:
                loss_a[sl] = min(0.5, e.level)
                conceal[sl] = np.clip(e.level + rng.normal(0, 0.03, e.end_s - e.start_s), 0.25, 1.0)
            elif e.kind == "reconnect":
                # The network of one side drops: no media arrives either way.
                # Collectors keep sampling and resend after reconnecting.
                # Chromium counts no packetsLost over such a gap (a stream
                # restart), so it shows as concealment and a freeze only.
                frozen[sl] = True
                conceal[sl] = 1.0
                dead[sl] = True
                if mine:
                    late[sl] = True
        a_lost = rng.binomial(AUDIO_PPS, np.clip(loss_a, 0, 1))
        v_lost = rng.binomial(VIDEO_PPS, np.clip(loss_v, 0, 1))
        v_rtx = rng.binomial(v_lost, 0.8)
        a_lost[dead] = AUDIO_PPS
        v_lost[dead] = VIDEO_PPS
        v_rtx[dead] = 0
        fps = np.where(frozen, 0.0, np.clip(FPS - rng.poisson(0.3, n), 0, FPS)).astype(np.float64)
        dropped = np.where(frozen, rng.integers(0, 6, n), rng.binomial(1, 0.02, n)).astype(np.int64)
        # The browser adds a freeze to totalFreezesDuration in the first interval after video resumes.
        freeze_ms = np.zeros(n)
        ends = np.flatnonzero(np.diff(frozen.astype(np.int8)) == -1) + 1
        for end in ends:
            start = end - 1
            while start > 0 and frozen[start - 1]:
                start -= 1
            freeze_ms[end] = (end - start) * 1000.0
        scale = 1.0 - np.clip(loss_v * 3, 0, 0.9)
        out[role] = Figures(
            late=late,
            rtt=rtt.copy(),
            a_jit=np.round(jit, 0),
            v_jit=np.round(jit * 1.3, 0),
            a_rx=(AUDIO_PPS - a_lost).astype(np.int64),
            a_lost=np.where(dead, 0, a_lost).astype(np.int64),
            v_rx=(VIDEO_PPS - v_lost + v_rtx).astype(np.int64),
            v_rtx=v_rtx.astype(np.int64),
            v_lost=np.where(dead, 0, v_lost).astype(np.int64),
            concealed=np.rint(np.clip(conceal, 0, 1) * AUDIO_SAMPLES).astype(np.int64),
            fps=fps,
            dropped=dropped,
            freeze_ms=freeze_ms,
            a_kbps=np.round(np.where(dead, 0.0, 32.0 * (1 - np.clip(loss_a, 0, 1))), 1).astype(np.float64),
            v_kbps=np.round(np.where(frozen, 5.0, 850.0 * scale + rng.normal(0, 30, n)), 1).astype(np.float64),
            out_a_kbps=np.full(n, 32.0),
            out_v_kbps=np.round(850.0 + rng.normal(0, 30, n), 1),
        )
    # Latency spikes raise the round trip both participants measure.
    spike = np.zeros(n)
    for e in episodes:
        if e.kind == "latency_spike":
            spike[e.start_s : e.end_s] = e.level - base_rtt
    for f in out.values():
        f.rtt = np.round(f.rtt + spike + np.where(spike > 0, rng.normal(0, 20, n), 0), 1)
    return out


def as_lists(f: Figures) -> dict[str, list[Any]]:
    """Every array as a Python list: per-sample access to lists is far
    cheaper than to NumPy scalars, and the JSON gets plain ints and floats."""
    return {name: getattr(f, name).tolist() for name in f.__dataclass_fields__}


def sample_dict(f: dict[str, list[Any]], i: int, seq: int, start_ms: int) -> dict[str, Any]:
    """Second ``i`` of the figures (as ``as_lists``) as a ``bondline.sample/1`` sample."""
    fps = f["fps"][i]
    frames = int(fps)
    dropped = f["dropped"][i]
    freeze = f["freeze_ms"][i]
    concealed = f["concealed"][i]
    return {
        "seq": seq,
        "startMs": start_ms,
        "intervalMs": 1000,
        "source": "browser",
        "streams": [
            {"kind": "audio", "direction": "inbound", "id": "IT01A", "packetsReceived": f["a_rx"][i],
             "packetsLost": f["a_lost"][i], "jitterMs": f["a_jit"][i], "bitrateKbps": f["a_kbps"][i],
             "concealedSamples": concealed, "totalSamplesReceived": AUDIO_SAMPLES,
             "concealmentEvents": int(concealed > 0)},
            {"kind": "video", "direction": "inbound", "id": "IT01V", "packetsReceived": f["v_rx"][i],
             "retransmittedPacketsReceived": f["v_rtx"][i], "packetsLost": f["v_lost"][i],
             "jitterMs": f["v_jit"][i], "bitrateKbps": f["v_kbps"][i], "framesDecoded": frames,
             "framesReceived": frames + dropped, "framesDropped": dropped,
             "framesPerSecond": fps, "freezeCount": int(freeze > 0), "totalFreezesDurationMs": freeze},
            {"kind": "audio", "direction": "outbound", "id": "OT01A", "packetsSent": AUDIO_PPS,
             "bitrateKbps": f["out_a_kbps"][i]},
            {"kind": "video", "direction": "outbound", "id": "OT01V", "packetsSent": VIDEO_PPS,
             "bitrateKbps": f["out_v_kbps"][i], "framesEncoded": 20, "framesSent": 20},
        ],
        "connection": {"state": "connected", "rttMs": f["rtt"][i], "localCandidateType": "srflx",
                       "remoteCandidateType": "srflx", "protocol": "udp"},
    }
