"""CPU per sample of each stage of Bondline's ingest parsing, beside the bare
reference's parsing (bench/bare_ingest.py), on the recorded real samples.

Process CPU time (not wall time), best of 6 passes over 50 batches of 100:
less disturbed by other processes on a shared machine than the bench's
throughput, though a busy machine still slows it through shared caches.

    .venv/bin/python bench/ingest_cpu.py [--seed N]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import T0  # noqa: E402
from bench.real_samples import Replay  # noqa: E402
from server.config import Settings  # noqa: E402
from server.ingest import protocol as p  # noqa: E402
from server.ingest.fastread import read_usual_batch  # noqa: E402
from server.ingest.schema import batch_adapter  # noqa: E402
from server.sessions.tokens import TokenOwner  # noqa: E402


def per_sample_us(raws: list[str], f: Callable[[str], object], reps: int = 6) -> float:
    best = float("inf")
    for _ in range(reps):
        t = time.process_time()
        for raw in raws:
            f(raw)
        best = min(best, time.process_time() - t)
    return best / (len(raws) * 100) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=random.randrange(2**32))
    args = ap.parse_args()
    replay = Replay(args.seed)
    settings, owner = Settings(), TokenOwner(1, 1, "client")
    raws = [replay.batch_json(range(i * 100, i * 100 + 100), i, T0, i) for i in range(50)]
    print(f"seed {args.seed}, mean sample {replay.mean_bytes():.0f} bytes")
    stages: list[tuple[str, Callable[[str], object]]] = [
        # The reader the ingest path uses since issue 21, and the pydantic one it replaced there.
        ("msgspec fast reader of the batch (fastread)", read_usual_batch),
        ("pydantic validate_json of the batch", lambda raw: batch_adapter.validate_json(raw)),
        ("websocket_message (validate + checks)", lambda raw: p.websocket_message(raw, settings)),
        ("websocket_message + to_rows (headline, JSON)", lambda raw: p.to_rows(p.websocket_message(raw, settings)[0],
                                                                               owner, 0)),
        ("bare: orjson loads + dumps per sample",
         lambda raw: [orjson.dumps(s).decode() for s in orjson.loads(raw)["samples"]]),
    ]
    for name, f in stages:
        print(f"{name}: {per_sample_us(raws, f):.1f} us CPU per sample")
    return 0


if __name__ == "__main__":
    sys.exit(main())
