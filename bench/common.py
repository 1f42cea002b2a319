"""Pieces the benchmarks share: a realistic sample and a count of the store."""

from __future__ import annotations

import sqlite3
import time
import timeit
from typing import Any

T0 = int(time.time() * 1000) - 86_400_000

# The same statement as `python -m timeit -n 5 "sum(i*i for i in range(1000000))"`.
CPU_REFERENCE = "sum(i*i for i in range(1000000))"


def cpu_reference_ms() -> float:
    """Best of 5 of the reference statement, in ms.

    Machines here differ by up to half from one session to the next, so
    bench/ingest.py prints this beside its figures: two runs are comparable
    only when their references are close.
    """
    loops = 5
    return min(timeit.repeat(CPU_REFERENCE, number=loops, repeat=5)) / loops * 1000


def make_sample(seq: int, source: str = "browser") -> dict[str, Any]:
    # About 700 bytes of JSON, like a browser sample with audio and video.
    return {
        "seq": seq,
        "startMs": T0 + seq * 1000,
        "intervalMs": 1000,
        "source": source,
        "streams": [
            {"kind": "audio", "direction": "inbound", "id": "IT01A123", "packetsReceived": 50, "packetsLost": 0,
             "jitterMs": 3.0, "bitrateKbps": 32.1, "concealedSamples": 0, "totalSamplesReceived": 48000,
             "concealmentEvents": 0, "audioLevel": 0.05},
            {"kind": "video", "direction": "inbound", "id": "IT01V456", "packetsReceived": 120, "packetsLost": 1,
             "retransmittedPacketsReceived": 1, "jitterMs": 6.0, "bitrateKbps": 812.5, "framesDecoded": 30,
             "framesDropped": 0, "framesPerSecond": 30.0, "freezeCount": 0, "totalFreezesDurationMs": 0.0},
            {"kind": "audio", "direction": "outbound", "id": "OT01A789", "packetsSent": 50, "bitrateKbps": 33.0,
             "rttMs": 21.0},
            {"kind": "video", "direction": "outbound", "id": "OT01V012", "packetsSent": 118, "bitrateKbps": 790.0,
             "framesEncoded": 30, "qualityLimitationReason": "none", "rttMs": 22.0},
        ],
        "connection": {"state": "connected", "iceState": "connected", "localCandidateType": "host",
                       "remoteCandidateType": "host", "protocol": "udp", "rttMs": 21.5},
    }


def stored_counts(db_url: str) -> tuple[int, int]:
    """(rows, distinct (participant, seq)) straight from the store."""
    if db_url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(db_url) as conn:
            row = conn.execute("select count(*), count(distinct (participant_id, seq)) from sample").fetchone()
            assert row is not None
            return int(row[0]), int(row[1])
    con = sqlite3.connect(db_url)
    try:
        rows = con.execute("select count(*) from sample").fetchone()[0]
        distinct = con.execute("select count(*) from (select distinct participant_id, seq from sample)").fetchone()[0]
        return int(rows), int(distinct)
    finally:
        con.close()
