"""The server's own address, as links it hands out must carry it."""

from __future__ import annotations

from fastapi import Request


def base_url(request: Request) -> str:
    """BONDLINE_PUBLIC_URL when set (behind a proxy), else what the request reached."""
    configured = request.app.state.settings.public_url
    return str(configured or request.base_url).rstrip("/")
