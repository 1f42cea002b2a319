"""Which browser origins may reach the ingest endpoints and the plugin script.

An Origin header is sent by browsers only. A request without one comes from
a non-browser client (the Python collector, a probe agent, curl) and is not a
cross-site risk. A browser request is allowed when its origin is the
server's own (the request's scheme and Host, or ``public_url``) or is listed
in ``BONDLINE_ALLOWED_ORIGINS``.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from server.config import Settings


def normalise_origin(value: str) -> str | None:
    """``scheme://host[:port]`` in lower case with default ports dropped, or None."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        return None
    scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or (scheme, port) in (("http", 80), ("https", 443)):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def allowed_list(settings: Settings) -> set[str]:
    out: set[str] = set()
    for item in settings.allowed_origins.split(","):
        item = item.strip()
        if item == "*":
            out.add("*")
        elif item:
            norm = normalise_origin(item)
            if norm:
                out.add(norm)
    return out


def own_origins(settings: Settings, scheme: str, host_header: str | None) -> set[str]:
    out: set[str] = set()
    if host_header:
        norm = normalise_origin(f"{scheme}://{host_header}")
        if norm:
            out.add(norm)
    if settings.public_url:
        norm = normalise_origin(settings.public_url)
        if norm:
            out.add(norm)
    return out


def is_same_origin(origin: str, settings: Settings, scheme: str, host_header: str | None) -> bool:
    norm = normalise_origin(origin)
    return norm is not None and norm in own_origins(settings, scheme, host_header)


def origin_allowed(origin: str | None, settings: Settings, scheme: str, host_header: str | None) -> bool:
    """May a request with this Origin header reach ingest or the plugin script?"""
    if origin is None:
        return True
    norm = normalise_origin(origin)
    if norm is None:
        # "null" (sandboxed frames, file://) and junk are never allowed.
        return False
    if norm in own_origins(settings, scheme, host_header):
        return True
    listed = allowed_list(settings)
    return "*" in listed or norm in listed


def header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v.decode("latin-1")
    return None
