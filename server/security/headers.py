"""Security headers on every HTTP response (docs/security.md, "Headers").

The Content-Security-Policy allows scripts and style sheets only from this
server: no inline script, no eval, no framing by other sites. A response
that sets its own Content-Security-Policy keeps it (a page with special
needs states them itself, visibly, in its own code).
"""

from __future__ import annotations

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        # <style> elements and style sheets only from here; style="..."
        # attributes stay allowed because chart SVGs use them, and they
        # cannot select or exfiltrate anything.
        "style-src 'self'",
        "style-src-elem 'self'",
        "style-src-attr 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self'",
        "connect-src 'self'",
        "media-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

# The interactive API docs (/docs, /redoc; server/web/apidocs.py) load their
# scripts from this server too; Swagger UI and ReDoc inject <style> elements,
# and ReDoc runs a blob: worker. They hold no client data.
DOCS_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "worker-src blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
DOCS_PATHS = ("/docs", "/redoc")

# Paths whose responses may be cached: they hold no personal data.
CACHEABLE_PREFIXES = ("/static/", "/plugin/", "/docs-assets/", "/favicon.ico")


def security_headers(path: str, https: bool) -> list[tuple[bytes, bytes]]:
    csp = DOCS_CSP if path in DOCS_PATHS else CSP
    out = [
        (b"content-security-policy", csp.encode()),
        (b"x-content-type-options", b"nosniff"),
        # Survey links carry a token in the URL: never leak it in a Referer.
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"permissions-policy", b"camera=(self), microphone=(self), geolocation=(), payment=(), usb=()"),
    ]
    if https:
        out.append((b"strict-transport-security", b"max-age=31536000"))
    if not path.startswith(CACHEABLE_PREFIXES):
        # Pages and API answers carry health data: keep them out of caches.
        out.append((b"cache-control", b"no-store"))
    return out
