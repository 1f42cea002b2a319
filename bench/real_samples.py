"""Samples of a real Chromium call (bench/record_samples.py recorded them),
replayed varied: every participant of the bench cycles through the recorded
samples from its own starting point, with its figures jittered by a seeded
draw, so batches carry real sizes and shapes rather than one sample
repeated."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import Any

import orjson

FIXTURE = Path(__file__).resolve().parent / "data" / "chromium_call_samples.json.gz"
SCHEMA = "bondline.sample/1"
# Fields the collector derives per interval: jittered by up to +-20 %.
_VARIED = ("packetsReceived", "packetsLost", "jitterMs", "bitrateKbps", "framesDecoded", "framesPerSecond",
           "packetsSent", "rttMs", "roundTripTimeMs", "totalSamplesReceived", "concealedSamples", "audioLevel")


def recorded() -> list[dict[str, Any]]:
    with gzip.open(FIXTURE, "rt") as f:
        return [r["sample"] for r in json.load(f)]


def _vary(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        return {k: (_jitter(v, rng) if k in _VARIED else _vary(v, rng)) for k, v in value.items()}
    if isinstance(value, list):
        return [_vary(v, rng) for v in value]
    return value


def _jitter(v: Any, rng: random.Random) -> Any:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return v
    x = v * rng.uniform(0.8, 1.2)
    return max(0, round(x)) if isinstance(v, int) else round(max(0.0, x), 3)


class Replay:
    """Pre-rendered sample texts (without their seq and startMs), so a load
    generator splices a batch from text instead of serialising dicts: it
    shares the server's cores."""

    def __init__(self, seed: int, variants: int = 256) -> None:
        rng = random.Random(seed)
        base = recorded()
        self.tails: list[str] = []
        for i in range(variants):
            s = _vary(base[i % len(base)], rng)
            s = {k: v for k, v in s.items() if k not in ("seq", "startMs")}
            self.tails.append(orjson.dumps(s).decode()[1:])  # without its "{"

    def sample_json(self, seq: int, start_ms: int, offset: int = 0) -> str:
        return f'{{"seq":{seq},"startMs":{start_ms},{self.tails[(seq + offset) % len(self.tails)]}'

    def batch_json(self, seqs: range, batch_id: int, t0: int, offset: int = 0) -> str:
        samples = ",".join(self.sample_json(q, t0 + q * 1000, offset) for q in seqs)
        return f'{{"type":"samples","schema":"{SCHEMA}","batch":{batch_id},"samples":[{samples}]}}'

    def mean_bytes(self) -> float:
        return sum(len(self.sample_json(10**6, 1_764_000_000_000, i)) for i in range(len(self.tails))) / len(self.tails)
