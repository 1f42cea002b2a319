"""Where the browser and the SFU disagree about a session's legs.

Both sides count the same packets from opposite ends: the browser's
outbound ``packetsLost`` is what the SFU's receiver reports told it, the
SFU's ``lost`` on a publisher handle is its own count; the browser's inbound
``packetsLost`` is its own count, the SFU's ``lostByRemote`` on subscriber
handles what the browser's receiver reports told it. They differ when one
side's reports did not arrive (an outage, a page closed early), when a
collector missed a connection, or when the platform's labels are wrong: that
is what the table shows. RTT: the browser's connection RTT (STUN) against
the RTT Janus measured from the participant's receiver reports.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from sqlalchemy.engine import Connection

from server.sessions.service import participants, sample_rows
from server.sfu.store import session_stats

ROLES = ("clinician", "client")


@dataclass(frozen=True)
class Comparison:
    role: str
    figure: str
    unit: str
    browser: float | None
    sfu: float | None
    disagree: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _total_per_handle(rows: list[dict[str, Any]], leg: str, key: str) -> float | None:
    """Sum over handles and media of the highest cumulative value (Janus counts from the handle's
    start; its last report, when the connection hangs up, has every counter back at zero)."""
    top: dict[tuple[str, str], float] = {}
    for r in rows:
        if r["leg"] == leg and key in r:
            k = (r["handle"], r["media"])
            top[k] = max(top.get(k, 0), r[key])
    return float(sum(top.values())) if top else None


def _differ(a: float | None, b: float | None, absolute: float, relative: float) -> bool:
    if a is None or b is None:
        return a is not b
    return abs(a - b) > max(absolute, relative * max(abs(a), abs(b)))


def compare(samples: dict[str, list[dict[str, Any]]], sfu: dict[str, list[dict[str, Any]]]) -> list[Comparison]:
    """One row per participant and figure, for participants the SFU reported on.

    ``samples``: per role, the stored sample JSON of the browser collector;
    ``sfu``: per role, server/sfu/store.py's rows."""
    out: list[Comparison] = []
    for role in ROLES:
        rows = sfu.get(role)
        if not rows:
            continue
        streams = [st for s in samples.get(role, []) for st in s.get("streams", []) if st.get("farEnd") == "sfu"]
        up = [st["packetsLost"] for st in streams if st["direction"] == "outbound" and "packetsLost" in st]
        down = [st["packetsLost"] for st in streams if st["direction"] == "inbound" and "packetsLost" in st]
        b_up, b_down = (float(sum(up)) if up else None), (float(sum(down)) if down else None)
        s_up, s_down = _total_per_handle(rows, "uplink", "lost"), _total_per_handle(rows, "downlink", "lostByRemote")
        out.append(Comparison(role, "packets lost sending (uplink)", "packets", b_up, s_up,
                              _differ(b_up, s_up, 2, 0.1)))
        out.append(Comparison(role, "packets lost receiving (downlink)", "packets", b_down, s_down,
                              _differ(b_down, s_down, 2, 0.1)))
        b_rtt = [s["connection"]["rttMs"] for s in samples.get(role, [])
                 if isinstance(s.get("connection"), dict) and isinstance(s["connection"].get("rttMs"), (int, float))]
        s_rtt = [r["rttMs"] for r in rows if r["leg"] == "downlink" and r.get("rttMs")]
        bm = float(statistics.median(b_rtt)) if b_rtt else None
        sm = float(statistics.median(s_rtt)) if s_rtt else None
        out.append(Comparison(role, "round trip to the SFU (median)", "ms", bm, sm, _differ(bm, sm, 10, 0.25)))
    return out


def session_comparison(conn: Connection, session_id: int) -> list[Comparison]:
    """The table for one session; empty when no SFU reported on it (nothing else is read then)."""
    sfu = session_stats(conn, session_id)
    if not sfu:
        return []
    samples: dict[str, list[dict[str, Any]]] = {}
    for role, pid in participants(conn, session_id).items():
        samples[role] = [orjson.loads(r.data) for r in sample_rows(conn, pid)]
    return compare(samples, sfu)
