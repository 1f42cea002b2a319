"""The app's one template environment.

Every feature's templates folder and Jinja globals are added once, when the
app is created (server/web/features.py); pages render through ``render``,
which finds the environment on the app. Templates of all features share one
name space, so each feature names its own (``reports_*.html``, ...) and all
may extend the web pages' ``base.html``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import BaseLoader, ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from starlette.responses import Response


class Pages:
    def __init__(self) -> None:
        self._folders: list[BaseLoader] = []
        self.env = Environment(loader=ChoiceLoader(self._folders), autoescape=select_autoescape(default=True))
        self._templates = Jinja2Templates(env=self.env)

    def add_folder(self, folder: Path) -> None:
        if not folder.is_dir():
            raise ValueError(f"no templates folder {folder}")
        self._folders.append(FileSystemLoader(str(folder)))

    def add_globals(self, values: Mapping[str, Any]) -> None:
        clash = set(values) & set(self.env.globals) - {"url_for"}
        if clash:
            raise ValueError(f"template globals defined twice: {sorted(clash)}")
        self.env.globals.update(values)

    def render(self, request: Request, name: str, context: Mapping[str, Any] | None = None, *,
               status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
        return self._templates.TemplateResponse(request, name, dict(context or {}), status_code=status_code,
                                                headers=dict(headers) if headers else None)


def render(request: Request, name: str, context: Mapping[str, Any] | None = None, *,
           status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """Render one of the app's templates for ``request``."""
    pages: Pages = request.app.state.pages
    return pages.render(request, name, context, status_code=status_code, headers=headers)
