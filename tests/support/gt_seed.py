"""One seed for every ground-truth test of a run: fresh each run (each run
draws new impairments), printed in pytest's header and by each test, and
replayable with ``BONDLINE_GT_SEED=<seed>``."""

from __future__ import annotations

import os
import secrets

GT_SEED_ENV = "BONDLINE_GT_SEED"
GT_SEED = int(os.environ.get(GT_SEED_ENV) or secrets.randbits(32))


def gt_line() -> str:
    return f"ground-truth seed: {GT_SEED} (replay with {GT_SEED_ENV}={GT_SEED})"
