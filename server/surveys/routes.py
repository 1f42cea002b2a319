"""The surveys router the app includes: pages, API, and the lifespan that
loads and checks the instrument files at start."""

from __future__ import annotations

from fastapi import APIRouter

from server.surveys import api, pages
from server.surveys.registry import lifespan

router = APIRouter(lifespan=lifespan)
router.include_router(pages.router)
router.include_router(api.router)
