"""The interactive API docs, /docs (Swagger UI) and /redoc (ReDoc), served
from this server: their scripts and styles come from the fastapi-offline
package, not a CDN, so they work on a clinic's locked-down network and no
third party sees who reads them. Each page starts its viewer from a script
file, so the pages need no inline script (docs/security.md, "Headers")."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.responses import Response

from server.web.assets import Asset
from server.web.features import Feature
from server.web.pages import render

router = APIRouter(include_in_schema=False)
VENDOR = "fastapi_offline"


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui(request: Request) -> Response:
    return render(request, "apidocs_swagger.html", {"title": request.app.title})


@router.get("/redoc", response_class=HTMLResponse)
def redoc(request: Request) -> Response:
    return render(request, "apidocs_redoc.html", {"title": request.app.title})


FEATURE = Feature(
    "api docs",
    routers=[router],
    assets={
        "/docs-assets/swagger-ui-bundle.js": Asset(VENDOR, "static/swagger-ui-bundle.js"),
        "/docs-assets/swagger-ui.css": Asset(VENDOR, "static/swagger-ui.css"),
        "/docs-assets/redoc.standalone.js": Asset(VENDOR, "static/redoc.standalone.js"),
        "/docs-assets/swagger-init.js": Asset("server.web", "static/swagger-init.js"),
    },
    templates=Path(__file__).parent / "templates" / "apidocs",
)
