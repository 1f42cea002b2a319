"""What a feature adds to the app, declared once and installed at creation.

A feature (ingest, sessions, reports, surveys, sidecar, accounts, the demo
call, the web pages themselves) declares its routers, its templates folder,
its template globals and its static files in one ``Feature`` value beside
its routes; server/app.py installs the list. Nothing is added to the app
at import time, and no route's position decides what it answers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI

from server.web.assets import Asset, Assets
from server.web.pages import Pages


@dataclass(frozen=True)
class Feature:
    name: str
    routers: Sequence[APIRouter] = ()
    templates: Path | None = None
    template_globals: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    assets: Mapping[str, Asset] = field(default_factory=dict)


def install_features(app: FastAPI, features: Sequence[Feature]) -> None:
    """Add every feature's routers, templates, globals and files to ``app``;
    the template environment is ``app.state.pages``, the files ``app.state.assets``."""
    pages, assets = Pages(), Assets()
    for feature in features:
        if feature.templates is not None:
            pages.add_folder(feature.templates)
        pages.add_globals(feature.template_globals)
        assets.add(feature.assets)
        for router in feature.routers:
            app.include_router(router)
    assets.install(app)
    app.state.pages = pages
    app.state.assets = assets
