"""Everything accounts and security add to the app, in one call from app.py."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from server.accounts.admin_pages import router as admin_router
from server.accounts.bootstrap import ensure_first_admin
from server.accounts.deps import register_globals
from server.accounts.erasure import router as erasure_router
from server.accounts.pages import router as pages_router
from server.config import Settings
from server.security.install import install_security


def install_accounts(app: FastAPI, engine: Engine, settings: Settings) -> None:
    register_globals()
    install_security(app, settings)
    app.include_router(pages_router)
    app.include_router(admin_router)
    app.include_router(erasure_router)
    ensure_first_admin(engine, settings)
