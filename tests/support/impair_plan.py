"""A seeded impairment for one call through the UDP relay (tests/support/udp_impair.py).

Drawn per run from one seed (printed; ``BONDLINE_GT_SEED`` replays it):
- delay per direction (10-40 ms) plus per-packet jitter (0..J ms, J drawn
  4-15 ms) on every datagram; the relay keeps packets in order;
- random loss of video RTP packets (1-4 %), all call long, first and last
  second included;
- two loss bursts (0.6-1.2 s each, 90 % of the video packets dropped);
- one outage (1.5-2.5 s): every datagram both ways is dropped.
Audio RTP is lost only in the outage, so the audio gap's truth is the outage.
Times are relative to the first RTP packet the relay sees.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

from tests.support.udp_impair import Crossing

OPUS_PT = 111  # Chromium's Opus payload type; the test checks it against getStats


def draw_seed() -> int:
    env = os.environ.get("BONDLINE_GT_SEED")
    seed = int(env) if env else random.SystemRandom().randrange(1 << 31)
    print(f"ground-truth seed: {seed} (replay with BONDLINE_GT_SEED={seed})")
    return seed


@dataclass
class ImpairPlan:
    seed: int
    delay_ms: dict[str, float] = field(default_factory=dict)
    jitter_ms: float = 0.0
    video_loss: float = 0.0
    bursts: list[tuple[float, float]] = field(default_factory=list)  # (start s, end s)
    burst_loss: float = 0.9
    outage: tuple[float, float] = (0.0, 0.0)
    t0: float | None = None  # epoch ms of the first RTP packet

    @classmethod
    def draw(cls, seed: int, run_s: float) -> ImpairPlan:
        rng = random.Random(seed)
        plan = cls(seed)
        plan.delay_ms = {"up": rng.uniform(10, 40), "down": rng.uniform(10, 40)}
        plan.jitter_ms = rng.uniform(4, 15)
        plan.video_loss = rng.uniform(0.01, 0.04)
        out_start = rng.uniform(0.40, 0.50) * run_s
        plan.outage = (out_start, out_start + rng.uniform(1.5, 2.5))
        for lo, hi in ((0.15, 0.30), (0.65, 0.80)):
            start = rng.uniform(lo, hi) * run_s
            plan.bursts.append((start, start + rng.uniform(0.6, 1.2)))
        plan._rng = random.Random(seed ^ 0x5EED)
        return plan

    def describe(self) -> str:
        return (f"delay up {self.delay_ms['up']:.1f} ms, down {self.delay_ms['down']:.1f} ms, jitter 0-"
                f"{self.jitter_ms:.1f} ms, video loss {self.video_loss:.3f}, bursts "
                + ", ".join(f"{a:.2f}-{b:.2f} s" for a, b in self.bursts)
                + f", outage {self.outage[0]:.2f}-{self.outage[1]:.2f} s")

    def rel_s(self, t_ms: float) -> float:
        return (t_ms - (self.t0 or t_ms)) / 1000

    def in_outage(self, t_ms: float) -> bool:
        return self.t0 is not None and self.outage[0] <= self.rel_s(t_ms) < self.outage[1]

    def decide(self, direction: str, t_ms: float, c: Crossing) -> tuple[bool, float]:
        """Called by the relay thread for every datagram: (drop?, extra delay ms)."""
        if c.ssrc is not None and self.t0 is None:
            self.t0 = t_ms
        jitter = self._rng.uniform(0, self.jitter_ms)
        if self.in_outage(t_ms):
            return True, 0.0
        if c.ssrc is None or c.pt == OPUS_PT:
            return False, jitter
        rel = self.rel_s(t_ms)
        p = self.burst_loss if any(a <= rel < b for a, b in self.bursts) else self.video_loss
        return self._rng.random() < p, jitter

    _rng: random.Random = field(default_factory=random.Random, repr=False)
