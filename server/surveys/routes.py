"""The surveys feature the app installs: pages, API, the stylesheet, and the
lifespan that loads and checks the instrument files at start."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from server.surveys import api, pages
from server.surveys.registry import lifespan
from server.web.assets import Asset
from server.web.features import Feature

router = APIRouter(lifespan=lifespan)
router.include_router(pages.router)
router.include_router(api.router)

FEATURE = Feature(
    "surveys",
    routers=[router],
    templates=Path(__file__).parent / "templates",
    assets={f"/survey-assets/{name}": Asset("server.surveys", f"static/{name}")
            for name in ("survey.css", "survey-progress.js")},
)
