"""Whose connection: which leg each disruption came from.

For every disruption event (server/analysis/events.py) this decides the
leg: a participant's uplink (what they send), their downlink (what they
receive), both of their directions, their round trip, or "between the
two" / "undetermined" when the figures cannot separate the ends, and keeps
the evidence (which figure, reported by whom). The rules per topology and
their limits are in docs/methodology.md ("Whose connection").

The figures: what the receiver counted on its inbound streams, what the
sender's far end reported about the sender's outbound streams
(remote-inbound-rtp; peer to peer that far end *is* the receiver, through
an SFU it is the SFU), connection round trips, the server's own view of
each collector's link, and, where a probe ran, the sidecar's
per-participant path figures (server/analysis/legs.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from server.analysis.events import Disruption
from server.analysis.legs import LegSeries
from server.analysis.network_evidence import network_evidence
from server.analysis.series import EventRecord
from server.config import AnalysisConfig

MINUTE_MS = 60_000
OTHER = {"client": "clinician", "clinician": "client"}
SIDE_KEYS = ("client", "clinician", "between", "undetermined")


@dataclass(frozen=True)
class Evidence:
    figure: str  # "loss_in", "remote_inbound_loss", "probe_up_loss", "probe_down_loss", "rtt", "probe_rtt", ...
    reported_by: str  # the role whose collector reported it, "sfu" (its receiver reports), "sidecar" or "server"
    about: str  # the leg or path the figure describes, in words
    value: float | None  # loss as a fraction, times in ms
    unit: str


@dataclass(frozen=True)
class Leg:
    role: str  # whose network
    direction: str  # "up" (sending), "down" (receiving), "both", "round_trip"


@dataclass
class Attribution:
    verdict: str  # "uplink" | "downlink" | "both" | "round_trip" | "legs" | "between" | "undetermined"
    topology: str  # "peer" | "sfu"
    legs: tuple[Leg, ...]
    sender: str | None  # the media's direction when known: from ``sender`` to ``receiver``
    receiver: str | None
    loss: float | None  # loss (fraction) of the media on the way, over the event, when counted
    evidence: list[Evidence] = field(default_factory=list)

    @property
    def roles(self) -> set[str]:
        return {leg.role for leg in self.legs}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Attribution:
        return cls(d["verdict"], d["topology"], tuple(Leg(**leg) for leg in d["legs"]), d["sender"],
                   d["receiver"], d["loss"], [Evidence(**e) for e in d["evidence"]])


@dataclass
class Incident:
    """Events that overlap in time: one disruption however many sides saw it."""

    start_ms: int
    end_ms: int
    events: list[tuple[Disruption, Attribution]]

    @property
    def legs(self) -> list[Leg]:
        out: list[Leg] = []
        for _, a in self.events:
            out += [leg for leg in a.legs if leg not in out]
        return out


def _frac(lost: float, total: float) -> float | None:
    return None if math.isnan(lost) or math.isnan(total) or total <= 0 else lost / total


def _sum(a: np.ndarray) -> float:
    f = a[~np.isnan(a)]
    return float(f.sum()) if f.size else math.nan


class Rules:
    """The attribution rules over one session's figures."""

    def __init__(self, legs: dict[str, LegSeries], events: list[EventRecord], cfg: AnalysisConfig) -> None:
        self.legs = legs  # by role
        self.server_events = events
        self.cfg = cfg
        self.margin = int(cfg.merge_gap_ms)

    # -- figures over a window --------------------------------------------

    def rx_loss(self, role: str, a: int, b: int) -> float | None:
        s = self.legs.get(role)
        if s is None:
            return None
        w = s.window(a, b)
        lost, rx = _sum(s.values["in_lost"][w]), _sum(s.values["in_rx"][w])
        return _frac(lost, lost + rx)

    def counts(self, role: str, a: int, b: int, lost: str, total: str) -> tuple[float, float]:
        """Sums of two count figures over the samples overlapping [a, b) (NaN when none)."""
        s = self.legs.get(role)
        if s is None:
            return math.nan, math.nan
        w = s.window(a, b)
        return _sum(s.values[lost][w]), _sum(s.values[total][w])

    def tx_loss(self, role: str, a: int, b: int) -> float | None:
        s = self.legs.get(role)
        if s is None:
            return None
        w = s.window(a, b)
        return _frac(_sum(s.values["out_lost"][w]), _sum(s.values["out_sent"][w]))

    def probe_loss(self, role: str, path: str, a: int, b: int) -> float | None:
        s = self.legs.get(role)
        if s is None or not s.probe:
            return None
        w = s.probe_window(a, b)
        lost, rx = _sum(s.probe[f"{path}_lost"][w]), _sum(s.probe[f"{path}_rx"][w])
        return _frac(lost, lost + rx)

    def probe_rtt(self, role: str, a: int, b: int) -> float | None:
        s = self.legs.get(role)
        if s is None or not s.probe:
            return None
        v = s.probe["rtt_ms"][s.probe_window(a, b)]
        v = v[~np.isnan(v)]
        return float(v.max()) if v.size else None

    def topology(self, a: int, b: int) -> str:
        for s in self.legs.values():
            w = s.window(a, b)
            if w.any() and np.nanmax(s.values["sfu"][w]) > 0:
                return "sfu"
        return "peer"

    def lossy(self, x: float | None) -> bool:
        return x is not None and x >= self.cfg.loss_fraction

    def _collector_dropped(self, role: str, a: int, b: int) -> bool:
        """The server saw this participant's collector come back after a drop within [a, b]."""
        def dropped(e: EventRecord) -> bool:
            return e.kind == "collector.disconnect" or (
                e.kind == "collector.connect" and e.data.get("lastSeq") is not None)

        return any(e.role == role and e.origin == "server" and a <= e.t_ms <= b and dropped(e)
                   for e in self.server_events)

    # -- the rules ------------------------------------------------------------

    def media(self, d: Disruption, topo: str) -> Attribution:
        """Something the receiver got went wrong: which leg of sender -> receiver."""
        r = d.role or ""
        s = OTHER.get(r)
        # Counts over the event itself (what the sentence states); the probe's
        # own samples may sit a little apart, so it gets the margin.
        a, b = d.start_ms, d.end_ms
        pa, pb = a - self.margin, b + self.margin
        ev: list[Evidence] = []
        rx = self.rx_loss(r, a, b)
        if rx is not None:
            ev.append(Evidence("loss_in", r, f"media from the {'SFU' if topo == 'sfu' else s} as the {r} received it",
                               round(rx, 4), "fraction"))
        if s is None:
            return Attribution("undetermined", topo, (), None, r, rx, ev)
        tx = self.tx_loss(s, a, b)
        if tx is not None:
            ev.append(Evidence("remote_inbound_loss", "sfu" if topo == "sfu" else r,
                               f"the {s}'s outgoing media as the {'SFU' if topo == 'sfu' else r} received it "
                               f"(receiver reports, seen by the {s}'s collector)", round(tx, 4), "fraction"))
        back = self.rx_loss(s, a, b)
        if back is not None:
            ev.append(Evidence("loss_in", s, f"the other direction: media as the {s} received it", round(back, 4),
                               "fraction"))
        up, down = self.probe_loss(s, "up", pa, pb), self.probe_loss(r, "down", pa, pb)
        if up is not None:
            ev.append(Evidence("probe_up_loss", "sidecar", f"the {s}'s probe media as the sidecar received it",
                               round(up, 4), "fraction"))
        if down is not None:
            ev.append(Evidence("probe_down_loss", r, f"the sidecar's probe media as the {r} received it",
                               round(down, 4), "fraction"))
        legs: list[Leg] = []
        if topo == "sfu":
            # The SFU's receiver reports describe the sender's uplink alone; what the
            # receiver lost beyond that (after the SFU's repair) is its downlink. The
            # reports about the event's packets arrive up to report_lag_ms after it,
            # so the sender's reported losses are counted from the event's start to
            # that bound and compared, as packet counts, with the receiver's.
            lag_b = b + int(self.cfg.report_lag_ms)
            up_lost, _ = self.counts(s, a, lag_b, "out_lost", "out_sent")
            _, sent = self.counts(s, a, b, "out_lost", "out_sent")
            late = None if math.isnan(up_lost) else min(_frac(up_lost, sent) or 0.0, 1.0)
            if late is not None:
                ev.append(Evidence("remote_inbound_loss_lagged", "sfu",
                                   f"packets of the {s}'s outgoing media the SFU reported lost from the event's start "
                                   f"to {self.cfg.report_lag_ms / 1000:g} s after its end, per packet sent during it",
                                   round(late, 4), "fraction"))
            if self.lossy(tx) or self.lossy(late):
                legs.append(Leg(s, "up"))
            r_lost, r_rx = self.counts(r, a, b, "in_lost", "in_rx")
            beyond = None
            if not (math.isnan(r_lost) or math.isnan(up_lost)):
                beyond = _frac(max(r_lost - up_lost, 0.0), r_lost + r_rx)
            if self.lossy(rx) and self.lossy(beyond):
                legs.append(Leg(r, "down"))
        # A probe measures each access path on its own, in any topology.
        if self.lossy(up) and Leg(s, "up") not in legs:
            legs.append(Leg(s, "up"))
        if self.lossy(down) and Leg(r, "down") not in legs:
            legs.append(Leg(r, "down"))
        loss = rx if rx is not None else tx
        if legs:
            return Attribution(_verdict(legs), topo, tuple(legs), s, r, loss, ev)
        lossy = self.lossy(rx) or self.lossy(tx) or self.lossy(back)
        found = network_evidence(self.legs, self.cfg, r, s, a, b) if d.kind == "audio_dropout" and not lossy else []
        ev += [Evidence(*f) for f in found]
        if d.kind == "audio_dropout" and not (lossy or found):
            # Concealment with nothing wrong on the network either way (no loss, no
            # report of loss, no round-trip rise, no jitter, packets on time): the
            # device or its CPU paused; no connection is named.
            return Attribution("undetermined", topo, (), s, r, loss, ev)
        if topo == "peer" and (self.lossy(rx) or self.lossy(tx) or d.kind != "loss_burst"):
            # Peer to peer the receiver's count and the sender's receiver reports
            # describe the same path: the sender's uplink or the receiver's downlink.
            return Attribution("between", topo, (), s, r, loss, ev)
        return Attribution("undetermined", topo, (), s, r, loss, ev)

    def round_trip(self, d: Disruption, topo: str) -> Attribution:
        p = d.role or ""
        a, b = d.start_ms - self.margin, d.end_ms + self.margin
        ev = [Evidence("rtt", p, f"the {p}'s round trip to the {'SFU' if topo == 'sfu' else 'other participant'}",
                       d.severity, "ms")]
        legs: list[Leg] = []
        if topo == "sfu":
            legs.append(Leg(p, "round_trip"))
        for role in (p, OTHER.get(p)):
            if role is None:
                continue
            rtt = self.probe_rtt(role, a, b)
            if rtt is not None:
                ev.append(Evidence("probe_rtt", "sidecar", f"the {role}'s round trip to the sidecar", rtt, "ms"))
                if rtt >= self.cfg.rtt_ms and Leg(role, "round_trip") not in legs:
                    legs.append(Leg(role, "round_trip"))
        if legs:
            return Attribution(_verdict(legs), topo, tuple(legs), None, None, None, ev)
        return Attribution("between" if topo == "peer" else "undetermined", topo, (), None, None, None, ev)

    def connection(self, d: Disruption, topo: str) -> Attribution:
        p = d.role or ""
        o = OTHER.get(p)
        a, b = d.start_ms - self.margin, d.end_ms + self.margin
        mine = self._collector_dropped(p, a, b)
        theirs = o is not None and self._collector_dropped(o, a, b)
        ev = []
        if mine:
            ev.append(Evidence("collector_link", "server", f"the {p}'s link to Bondline's server dropped", None, ""))
        if theirs:
            ev.append(Evidence("collector_link", "server", f"the {o}'s link to Bondline's server dropped", None, ""))
        if mine and not theirs:
            # Only this participant lost the Internet as a whole: their network.
            return Attribution("both", topo, (Leg(p, "both"),), None, None, None, ev)
        if topo == "sfu" and not theirs:
            return Attribution("both", topo, (Leg(p, "both"),), None, None, None, ev)
        return Attribution("between" if topo == "peer" and not mine else "undetermined", topo, (), None, None,
                           None, ev)

    def attribute(self, d: Disruption) -> Attribution:
        topo = self.topology(d.start_ms - self.margin, d.end_ms + self.margin)
        if d.direction == "in":
            return self.media(d, topo)
        if d.direction == "path":
            return self.round_trip(d, topo)
        return self.connection(d, topo)


def _verdict(legs: list[Leg]) -> str:
    if len(legs) == 1:
        return {"up": "uplink", "down": "downlink", "both": "both", "round_trip": "round_trip"}[legs[0].direction]
    return "legs"


def attribute_all(events: list[Disruption], legs: dict[str, LegSeries], server_events: list[EventRecord],
                  cfg: AnalysisConfig) -> list[Attribution]:
    """One attribution per event, in the events' order."""
    rules = Rules(legs, server_events, cfg)
    return [rules.attribute(d) for d in events]


def incidents(events: list[Disruption], attrs: list[Attribution], gap_ms: float) -> list[Incident]:
    """Events that overlap (or are closer than ``gap_ms``) as one incident each."""
    out: list[Incident] = []
    for d, a in sorted(zip(events, attrs, strict=True), key=lambda x: x[0].start_ms):
        if out and d.start_ms - out[-1].end_ms < gap_ms:
            cur = out[-1]
            cur.end_ms = max(cur.end_ms, d.end_ms)
            cur.events.append((d, a))
        else:
            out.append(Incident(d.start_ms, d.end_ms, [(d, a)]))
    return out


def minute_legs(events: list[Disruption], attrs: list[Attribution], t0_ms: int,
                n: int) -> list[dict[str, Any]]:
    """Every disrupted minute with its attribution: the legs its events were
    attributed to, and "between" / "undetermined" when no leg is named."""
    out: dict[int, dict[str, Any]] = {}
    for i, (d, a) in enumerate(zip(events, attrs, strict=True)):
        first = max(int((d.start_ms - t0_ms) // MINUTE_MS), 0)
        last = min(int((max(d.end_ms - 1, d.start_ms) - t0_ms) // MINUTE_MS), n - 1)
        for m in range(first, last + 1):
            row = out.setdefault(m, {"minute": m, "legs": [], "verdicts": [], "events": []})
            row["events"].append(i)
            if a.verdict not in row["verdicts"]:
                row["verdicts"].append(a.verdict)
            for leg in a.legs:
                if {"role": leg.role, "direction": leg.direction} not in row["legs"]:
                    row["legs"].append({"role": leg.role, "direction": leg.direction})
    return [out[m] for m in sorted(out)]


def side_minutes(events: list[Disruption], attrs: list[Attribution], t0_ms: int, n: int) -> dict[str, int]:
    """Disrupted minutes per side: on the client's connection, on the clinician's,
    between the two (peer to peer, not separable) and undetermined.

    A minute counts for each participant whose leg an event in it was
    attributed to (it may count for both); "between" and "undetermined" take
    only the disrupted minutes no participant's leg accounts for.
    """
    masks = {k: np.zeros(n, dtype=bool) for k in SIDE_KEYS}
    for d, a in zip(events, attrs, strict=True):
        first = (d.start_ms - t0_ms) // MINUTE_MS
        last = (max(d.end_ms - 1, d.start_ms) - t0_ms) // MINUTE_MS
        lo, hi = max(int(first), 0), min(int(last), n - 1)
        if lo > hi:
            continue
        keys = sorted(a.roles) or ["between" if a.verdict == "between" else "undetermined"]
        for k in keys:
            if k in masks:
                masks[k][lo : hi + 1] = True
    sided = masks["client"] | masks["clinician"]
    masks["between"] &= ~sided
    masks["undetermined"] &= ~(sided | masks["between"])
    return {k: int(m.sum()) for k, m in masks.items()}
