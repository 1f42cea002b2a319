"""The FastAPI application: wiring of store, writer and routers."""

from __future__ import annotations

import gc
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from plugin.routes import router as plugin_router
from server import __version__
from server.accounts.wiring import install_accounts
from server.config import Settings, get_settings
from server.ingest.resolver import TokenResolver
from server.ingest.routes import router as ingest_router
from server.ingest.writer import IngestWriter
from server.reports.routes import router as reports_router
from server.sessions.api import router as sessions_router
from server.sidecar.routes import router as sidecar_router
from server.store.db import make_engine, upgrade
from server.surveys.routes import router as surveys_router
from server.web.routes import router as web_router

log = logging.getLogger("bondline")


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


def create_app(settings: Settings | None = None, *, migrate: bool = True) -> FastAPI:
    settings = settings or get_settings()
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
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.admin_key = admin_key
    app.include_router(ingest_router)
    app.include_router(sessions_router)
    app.include_router(web_router)
    app.include_router(sidecar_router)  # before plugin_router: its /plugin/{name} would shadow ours
    app.include_router(plugin_router)
    app.include_router(surveys_router)
    app.include_router(reports_router)
    install_accounts(app, engine, settings)
    return app
