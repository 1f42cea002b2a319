"""An outage's edges from Chromium's own packet timestamps (measurement only).

Each stored audio inbound stream carries ``lastPacketReceivedMs`` (the
plugin's copy of ``inbound-rtp.lastPacketReceivedTimestamp``): a sample
polled inside a silence reports the last packet before it, to the packet.
The resume has no such stamp (the first packet after it is never reported),
so it is counted back from the first sample after the silence: its last
packet's stamp less its packets received at the call's usual spacing.
The analysis now places interruptions this way from the stored column
(server/analysis/interruptions.py, ``last_packet_in_ms``); the outage test
prints this reading of the raw sample JSON next to it, so a difference
between the two points at the column or the analysis, not at the browser.
"""

from __future__ import annotations

import statistics
from typing import Any


def _audio(rows: list[dict[str, Any]], ssrc: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(r, st) for r in rows for st in r["data"]["streams"]
            if st["direction"] == "inbound" and st.get("ssrc") == ssrc]


def edges_from_stamps(rows: list[dict[str, Any]], ssrc: int, a: float, b: float) -> tuple[float, float] | None:
    """(stop, resume) epoch ms of the silence the relay saw from ``a`` to ``b`` (its
    last packet before, first after), as the receiver's stamps place it; None if
    no sample was polled inside the silence."""
    audio = _audio(rows, ssrc)
    stamps = [st["lastPacketReceivedMs"] for _, st in audio if "lastPacketReceivedMs" in st]
    before = [v for v in stamps if a - 1000 <= v < b]
    after = [(r, st) for r, st in audio if st.get("lastPacketReceivedMs", 0) >= b and st.get("packetsReceived", 0) > 0]
    spacing = [r["interval_ms"] / st["packetsReceived"] for r, st in audio if st.get("packetsReceived", 0) > 10]
    if not before or not after or not spacing:
        return None
    r, st = after[0]
    gap = statistics.median(spacing)  # ms between received packets: 20 ms over (1 - loss)
    return max(before), st["lastPacketReceivedMs"] - (st["packetsReceived"] - 1) * gap
