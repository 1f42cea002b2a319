"""What accounts and security add to the app: declared once, installed by server/app.py."""

from __future__ import annotations

from pathlib import Path

from server.accounts.admin_pages import router as admin_router
from server.accounts.deps import account_nav, csrf_field
from server.accounts.erasure import router as erasure_router
from server.accounts.pages import router as pages_router
from server.web.features import Feature

FEATURE = Feature(
    "accounts",
    routers=[pages_router, admin_router, erasure_router],
    templates=Path(__file__).parent / "templates",
    # base.html draws the account links and every form its CSRF field.
    template_globals={"csrf_field": csrf_field, "account_nav": account_nav},
)
