"""Per-leg figures of a session: what each side says about each direction.

The headline columns (server/ingest/headline.py) hold what a participant
*received*. Attribution (server/analysis/attribution.py) also needs what
the far end reported about the participant's *outgoing* streams (the
remote-inbound-rtp figures a collector puts on its outbound streams), the
topology of each stream (``farEnd``: "sfu" or "peer", "peer" when absent)
and the sidecar probe's path figures. Those live in the sample JSON, so
this module reads it, but only for the samples inside the windows being
attributed: a session without disruption events costs nothing more.
Definitions: docs/methodology.md ("Whose connection").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from sqlalchemy.engine import Connection

from server.analysis.series import FloatArray, IntArray

NAN = float("nan")
# Columns of a LegSeries, in order.
FIGURES = (
    "out_lost",  # packets the far end reported lost of this participant's outbound streams (remote-inbound-rtp)
    "out_sent",  # packets this participant sent on those streams
    "out_rtt_ms",  # largest round trip the far end's reports gave (remote-inbound-rtp)
    "out_jitter_ms",  # largest jitter the far end reported about this participant's streams
    "in_lost",  # packets this participant's inbound streams lost (new packets only)
    "in_rx",  # new packets received on them (retransmissions left out)
    "sfu",  # 1 when a stream of the sample names the SFU as its far end, 0 when peer to peer
    "in_jitter_ms",  # largest jitter this participant measured on its inbound streams
)
# Sources whose samples are a participant's own collector's view. Others (the
# probe, handled apart; any server-side source such as an SFU's own report)
# are never mixed into it.
COLLECTOR_SOURCES = frozenset({"browser", "python", "import"})
PROBE_FIGURES = (
    "up_lost",  # the sidecar's count of this participant's probe media lost (participant -> sidecar)
    "up_rx",
    "down_lost",  # this participant's count of the sidecar's probe media lost (sidecar -> participant)
    "down_rx",
    "rtt_ms",  # the probe's ping round trip
)


@dataclass
class LegSeries:
    """One participant's per-sample leg figures (collector samples) and probe figures."""

    participant_id: int
    role: str
    t_ms: IntArray
    end_ms: IntArray
    values: dict[str, FloatArray]
    probe_t_ms: IntArray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    probe_end_ms: IntArray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    probe: dict[str, FloatArray] = field(default_factory=dict)

    def window(self, a_ms: int, b_ms: int) -> np.ndarray:
        """Collector samples overlapping [a, b)."""
        return np.asarray((self.t_ms < b_ms) & (self.end_ms > a_ms))

    def probe_window(self, a_ms: int, b_ms: int) -> np.ndarray:
        return np.asarray((self.probe_t_ms < b_ms) & (self.probe_end_ms > a_ms))


def _add(acc: float, v: Any) -> float:
    return float(v) if acc != acc else acc + float(v)  # NaN until the first value


def _max(acc: float, v: Any) -> float:
    return float(v) if acc != acc or v > acc else acc


def sample_figures(sample: Mapping[str, Any]) -> tuple[float, ...]:
    """FIGURES of one collector sample (NaN where nothing reported them)."""
    out_lost = out_sent = out_rtt = out_jit = in_lost = in_rx = in_jit = NAN
    sfu = 0.0
    for s in sample.get("streams") or ():
        if s.get("farEnd") == "sfu":
            sfu = 1.0
        if s.get("direction") == "outbound":
            lost, sent = s.get("packetsLost"), s.get("packetsSent")
            if lost is not None and sent is not None:
                out_lost = _add(out_lost, max(lost, 0))
                out_sent = _add(out_sent, max(sent, 0))
            elif s.get("lossFraction") is not None and sent:
                # Only the receiver report's fraction: scale it to this interval's packets.
                out_lost = _add(out_lost, s["lossFraction"] * sent)
                out_sent = _add(out_sent, sent)
            if s.get("rttMs") is not None:
                out_rtt = _max(out_rtt, s["rttMs"])
            if s.get("jitterMs") is not None:
                out_jit = _max(out_jit, s["jitterMs"])
        else:
            got, lost = s.get("packetsReceived"), s.get("packetsLost")
            if got is not None and lost is not None:
                in_lost = _add(in_lost, max(lost, 0))
                in_rx = _add(in_rx, max(got - (s.get("retransmittedPacketsReceived") or 0), 0))
            if s.get("jitterMs") is not None:
                in_jit = _max(in_jit, s["jitterMs"])
    return out_lost, out_sent, out_rtt, out_jit, in_lost, in_rx, sfu, in_jit


def probe_figures(sample: Mapping[str, Any]) -> tuple[float, ...]:
    """PROBE_FIGURES of one probe sample: the sidecar's (outbound, path up) or the participant's (inbound, down)."""
    up_lost = up_rx = down_lost = down_rx = NAN
    for s in sample.get("streams") or ():
        got, lost = s.get("packetsReceived"), s.get("packetsLost")
        if got is None or lost is None:
            continue
        if s.get("direction") == "outbound":
            up_lost, up_rx = _add(up_lost, max(lost, 0)), _add(up_rx, max(got, 0))
        else:
            down_lost, down_rx = _add(down_lost, max(lost, 0)), _add(down_rx, max(got, 0))
    conn = sample.get("connection") or {}
    rtt = conn.get("rttMs")
    return up_lost, up_rx, down_lost, down_rx, NAN if rtt is None else float(rtt)


def from_samples(participant_id: int, role: str, samples: Iterable[Mapping[str, Any]]) -> LegSeries:
    """A LegSeries from ``bondline.sample/1`` dicts (any order, any source)."""
    rows: list[tuple[float, ...]] = []
    prows: list[tuple[float, ...]] = []
    for s in samples:
        t, dt = float(s["startMs"]), float(s["intervalMs"])
        if s.get("source") == "probe":
            prows.append((t, t + dt, *probe_figures(s)))
        elif s.get("source") in COLLECTOR_SOURCES:
            rows.append((t, t + dt, *sample_figures(s)))
    arr = np.array(sorted(rows), dtype=np.float64).reshape(-1, 2 + len(FIGURES))
    parr = np.array(sorted(prows), dtype=np.float64).reshape(-1, 2 + len(PROBE_FIGURES))
    return LegSeries(
        participant_id, role, arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64),
        {name: np.ascontiguousarray(arr[:, 2 + i]) for i, name in enumerate(FIGURES)},
        parr[:, 0].astype(np.int64), parr[:, 1].astype(np.int64),
        {name: np.ascontiguousarray(parr[:, 2 + i]) for i, name in enumerate(PROBE_FIGURES)},
    )


LOOK_BACK_MS = 600_000  # the longest sample interval: a sample starting this early may reach a window


def merge_windows(windows: list[tuple[int, int]], gap_ms: int = 0) -> list[tuple[int, int]]:
    """Union of [a, b) windows, joining those closer than ``gap_ms``."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(windows):
        if out and a - out[-1][1] <= gap_ms:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def load(conn: Connection, participants: Mapping[int, str], windows: list[tuple[int, int]]) -> dict[int, LegSeries]:
    """Leg figures of the participants' samples that overlap any window (ms, [a, b))."""
    out: dict[int, list[dict[str, Any]]] = {pid: [] for pid in participants}
    spans = merge_windows(windows)
    if participants and spans:
        mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        # Few ranges in the SQL (one per stretch of the session with events), however
        # many events: a long chain of ORs would hit SQLite's expression depth.
        ranges = merge_windows(spans, LOOK_BACK_MS)
        cond = " OR ".join([f"(t_ms < {mark} AND t_ms >= {mark})"] * len(ranges))
        sql = (f"SELECT participant_id, data FROM sample WHERE participant_id IN "
               f"({', '.join([mark] * len(participants))}) AND ({cond})")
        params: list[int] = [int(p) for p in participants]
        for a, b in ranges:
            params += [int(b), int(a) - LOOK_BACK_MS]
        cur = conn.connection.cursor()
        try:
            cur.execute(sql, tuple(params))
            rows = cur.fetchall()
        finally:
            cur.close()
        starts = np.array([a for a, _ in spans], dtype=np.int64)
        ends = np.array([b for _, b in spans], dtype=np.int64)
        for pid, data in rows:
            s = orjson.loads(data)
            # Only the samples that really overlap a window (the SQL bound is loose):
            # the last span starting before the sample's end must end after its start.
            t, dt = int(s["startMs"]), int(s["intervalMs"])
            i = int(np.searchsorted(starts, t + dt, side="left")) - 1
            if i >= 0 and ends[i] > t:
                out[int(pid)].append(s)
    return {pid: from_samples(pid, participants[pid], samples) for pid, samples in out.items()}
