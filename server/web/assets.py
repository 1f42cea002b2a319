"""Every static file the server hands out, served by one route.

Features declare their files (server/web/features.py) by URL path and by a
file inside a Python package, found with importlib.resources, so they are
served the same from a checkout and from an installed wheel (the browser
plugin's scripts are package data of ``plugin``). Each answer carries an
ETag and is cached briefly (five minutes), then revalidated: a platform page
loads the plugin from cache on every call yet picks up a new release within
minutes, with no versioned file names to manage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request, Response

CACHE_CONTROL = "public, max-age=300, must-revalidate"
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".png": "image/png",
}


@dataclass(frozen=True)
class Asset:
    """A file inside a Python package: ``Asset("plugin", "js/bondline.js")``."""

    package: str
    path: str

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[Path(self.path).suffix]

    def read(self) -> bytes:
        return files(self.package).joinpath(self.path).read_bytes()

    def stamp(self) -> int:
        """A value that changes when the file does (0 where it cannot be told)."""
        try:
            return Path(str(files(self.package).joinpath(self.path))).stat().st_mtime_ns
        except OSError:
            return 0


@dataclass(frozen=True)
class Loaded:
    body: bytes
    etag: str
    media_type: str


@lru_cache(maxsize=64)
def _load(asset: Asset, stamp: int) -> Loaded:
    # Keyed on the file's mtime so an edited file is served fresh without a restart.
    body = asset.read()
    return Loaded(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"', asset.media_type)


class Assets:
    """URL path -> packaged file, for the whole app."""

    def __init__(self) -> None:
        self._by_path: dict[str, Asset] = {}

    def add(self, files_by_path: Mapping[str, Asset]) -> None:
        for url, asset in files_by_path.items():
            if url in self._by_path:
                raise ValueError(f"asset {url} declared twice")
            if Path(asset.path).suffix not in MEDIA_TYPES or not files(asset.package).joinpath(asset.path).is_file():
                raise ValueError(f"asset {url}: no file {asset.path} in package {asset.package}")
            self._by_path[url] = asset

    def __contains__(self, url: object) -> bool:
        return url in self._by_path

    def paths(self) -> list[str]:
        return sorted(self._by_path)

    def install(self, app: FastAPI) -> None:
        """One route serves them all; each path is matched exactly, so no
        other route can shadow an asset or be shadowed by one."""
        for url in self.paths():
            app.add_api_route(url, self._serve, methods=["GET", "HEAD"], include_in_schema=False)

    def _serve(self, request: Request) -> Response:
        asset = self._by_path[request.url.path]
        loaded = _load(asset, asset.stamp())
        headers = {"ETag": loaded.etag, "Cache-Control": CACHE_CONTROL}
        if loaded.etag in (m.strip() for m in request.headers.get("if-none-match", "").split(",")):
            return Response(status_code=304, headers=headers)
        return Response(loaded.body, media_type=loaded.media_type, headers=headers)
