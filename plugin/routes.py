"""Serving the browser plugin: ``/plugin/bondline.js`` and its demo assets.

The script is cached briefly (five minutes) and revalidated by ETag, so a
platform page loads it from cache on every call yet picks up a new release
within minutes; there is no build step and no versioned file name to manage.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response

from plugin.demo_call import router as demo_router

JS_DIR = Path(__file__).parent / "js"
# Files a browser may fetch from /plugin/; nothing else under plugin/ is served.
PUBLIC = ("bondline.js", "demo-call.js", "demo-call.css")
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
CACHE_CONTROL = "public, max-age=300, must-revalidate"

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Asset:
    body: bytes
    etag: str
    media_type: str


@lru_cache(maxsize=len(PUBLIC))
def _load(name: str, mtime_ns: int) -> Asset:
    # Keyed on mtime so an edited file is served fresh without a restart.
    path = JS_DIR / name
    body = path.read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return Asset(body, etag, MEDIA_TYPES[path.suffix])


def asset(name: str) -> Asset:
    path = JS_DIR / name
    return _load(name, path.stat().st_mtime_ns)


@router.get("/plugin/{name}")
def plugin_file(name: str, request: Request) -> Response:
    if name not in PUBLIC:
        raise HTTPException(404, "no such plugin file")
    a = asset(name)
    headers = {"ETag": a.etag, "Cache-Control": CACHE_CONTROL, "X-Content-Type-Options": "nosniff"}
    match = request.headers.get("if-none-match", "")
    if a.etag in (m.strip() for m in match.split(",")):
        return Response(status_code=304, headers=headers)
    return Response(a.body, media_type=a.media_type, headers=headers)


router.include_router(demo_router)
