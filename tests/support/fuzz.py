"""One seed for every fuzz and property test of a run: fresh each run (so
each run explores new inputs), printed in pytest's header, and replayable
with ``BONDLINE_FUZZ_SEED=<seed>``. Hypothesis's example database is off, so
the seed alone decides what is generated."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, seed, settings

SEED_ENV = "BONDLINE_FUZZ_SEED"
FUZZ_SEED = int(os.environ.get(SEED_ENV) or secrets.randbits(32))

F = TypeVar("F", bound=Callable[..., Any])


def fuzz(max_examples: int) -> Callable[[F], F]:
    """Settings and seed of one fuzz test (apply outside ``@given``)."""

    def wrap(test: F) -> F:
        configured = settings(max_examples=max_examples, deadline=None, database=None, derandomize=False,
                              print_blob=True, suppress_health_check=list(HealthCheck))(test)
        return seed(FUZZ_SEED)(configured)  # type: ignore[no-any-return]

    return wrap
