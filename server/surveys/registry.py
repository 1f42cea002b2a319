"""The server's instrument registry: loaded and checked once at start.

The surveys router's lifespan loads it so a broken instrument file stops
``bondline serve`` with a message; ``registry_of`` also loads it on first
use for an app whose lifespan did not run (scripts, the CLI).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from server.config import Settings
from server.surveys.instruments import InstrumentError, Registry, load_registry

log = logging.getLogger("bondline.surveys")
_lock = threading.Lock()


def load_for(settings: Settings) -> Registry:
    return load_registry(
        settings.instruments_dir,
        {"client": settings.survey_client_instruments, "therapist": settings.survey_therapist_instruments},
    )


def registry_of(app: Any) -> Registry:
    found: Registry | None = getattr(app.state, "instruments", None)
    if found is not None:
        return found
    with _lock:
        found = getattr(app.state, "instruments", None)
        if found is None:
            found = load_for(app.state.settings)
            app.state.instruments = found
    return found


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    try:
        registry = load_for(app.state.settings)
    except InstrumentError as e:
        log.error("refusing to start: %s", e)
        raise
    app.state.instruments = registry
    log.info("instruments: %s", ", ".join(f"{i.id} {i.version}" for i in registry.all()))
    yield
