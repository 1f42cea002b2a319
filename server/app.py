"""The FastAPI application: settings, store, writer and the features."""

from __future__ import annotations

import gc
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from server import __version__
from server.accounts.bootstrap import ensure_first_admin
from server.accounts.wiring import FEATURE as ACCOUNTS
from server.api.sessions import FEATURE as SESSIONS
from server.config import Settings
from server.demo.banner import DemoBanner
from server.demo.call import FEATURE as DEMO_CALL
from server.ingest.resolver import TokenResolver
from server.ingest.routes import FEATURE as INGEST
from server.ingest.writer import IngestWriter
from server.reports.routes import FEATURE as REPORTS
from server.security.install import install_security
from server.sfu.routes import FEATURE as SFU
from server.sidecar.routes import FEATURE as SIDECAR
from server.store.db import make_engine, upgrade
from server.surveys.routes import FEATURE as SURVEYS
from server.web.apidocs import FEATURE as API_DOCS
from server.web.errors import install_error_pages
from server.web.features import Feature, install_features
from server.web.head import HeadAsGet
from server.web.routes import FEATURE as WEB

log = logging.getLogger("bondline")

FEATURES: tuple[Feature, ...] = (WEB, API_DOCS, INGEST, SESSIONS, SIDECAR, SFU, DEMO_CALL, SURVEYS, REPORTS,
                                 ACCOUNTS)


def tune_gc() -> None:
    """Collect the cyclic garbage less often, and never re-scan start-up objects.

    Each 1 Hz telemetry message allocates a few dozen short-lived objects; with
    thousands of connections open, CPython's default thresholds ran a
    collection every few messages and a full one (walking every connection's
    objects) often enough to put 150 ms pauses in the ack latency tail
    (docs/performance.md, "Telemetry ingest"). Freezing moves everything
    alive at start-up (modules, routes, the schema) out of the collector's
    view; the higher thresholds keep cycles collected, just in larger steps.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 1000)


def create_app(settings: Settings | None = None, *, migrate: bool = True, demo: bool = False) -> FastAPI:
    """The app. ``migrate=False`` when the caller has migrated already (the
    workers' supervisor); ``demo`` marks every page as synthetic demo data."""
    settings = settings or Settings()
    url = settings.sqlalchemy_url
    if migrate:
        upgrade(url)
    engine = make_engine(url, sqlite_synchronous=settings.sqlite_synchronous)
    admin_key = settings.admin_api_key or secrets.token_urlsafe(24)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        writer = IngestWriter(engine)
        await writer.start()
        app.state.writer = writer
        resolver = TokenResolver(engine, settings)
        await resolver.start()
        app.state.resolver = resolver
        tune_gc()
        if not settings.admin_api_key:
            log.warning("BONDLINE_ADMIN_API_KEY is not set; this run's admin API key is: %s", admin_key)
        try:
            yield
        finally:
            await resolver.stop()
            await writer.stop()
            engine.dispose()

    app = FastAPI(
        title="Bondline",
        version=__version__,
        summary="Connection quality and therapeutic alliance for telehealth video sessions.",
        lifespan=lifespan,
        # Served from the package by server/web/apidocs.py, not from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.admin_key = admin_key
    app.state.demo = demo
    install_features(app, FEATURES)
    install_security(app, settings)
    install_error_pages(app)
    app.add_middleware(HeadAsGet)
    if demo:
        app.add_middleware(DemoBanner)
    ensure_first_admin(engine, settings)
    return app
