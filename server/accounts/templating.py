"""Templates of the account pages; they extend the web pages' base.html."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from starlette.responses import Response

from server.accounts.deps import account_nav, csrf_field, register_globals
from server.web import routes as web

_env = Environment(
    loader=ChoiceLoader(
        [FileSystemLoader(str(Path(__file__).parent / "templates")), web.templates.env.loader]  # type: ignore[list-item]
    ),
    autoescape=select_autoescape(default=True),
)
templates = Jinja2Templates(env=_env)


def render(request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200) -> Response:
    register_globals()
    # Globals other areas add to base.html's environment must reach ours too.
    _env.globals.update(web.templates.env.globals)
    _env.globals["csrf_field"] = csrf_field
    _env.globals["account_nav"] = account_nav
    return templates.TemplateResponse(request, name, context or {}, status_code=status_code)
