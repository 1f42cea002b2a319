"""The bench replays a real Chromium call's samples varied (bench/real_samples.py):
every variant must be a sample Bondline accepts, of a real sample's size, or
the bench would measure refusals. Variation seeded from the run's fuzz seed."""

from __future__ import annotations

import orjson

from bench.real_samples import Replay, recorded
from server.config import Settings
from server.ingest import protocol as p
from server.sessions.tokens import TokenOwner
from tests.support.fuzz import FUZZ_SEED

T0 = 1_764_590_400_000


def test_recorded_call_is_real_sized_and_every_variant_is_accepted() -> None:
    base = recorded()
    assert len(base) >= 60 and {s["source"] for s in base} == {"browser"}
    replay = Replay(FUZZ_SEED)
    assert 1300 <= replay.mean_bytes() <= 1500
    raw = replay.batch_json(range(len(replay.tails)), 7, T0)
    batch, _ = p.websocket_message(raw, Settings())
    assert batch is not None and len(batch["samples"]) == len(replay.tails)
    rows, _ = p.to_rows(batch, TokenOwner(1, 1, "client"), 0)
    assert [r.seq for r in rows] == list(range(len(replay.tails)))
    # Varied, not one sample repeated: the stored JSON differs between variants.
    assert len({r.data for r in rows}) > len(base)
    assert orjson.loads(raw)["samples"][3]["startMs"] == T0 + 3000
