"""One ASGI middleware for the whole app: security headers, CORS and Origin
checks for the cross-origin surfaces (ingest, plugin script), a body size
limit for every request, and the pre-login CSRF cookie."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.config import Settings
from server.security.headers import security_headers
from server.security.origins import header, is_same_origin, origin_allowed

log = logging.getLogger("bondline.security")

# Where browsers on a telehealth platform's pages talk to Bondline directly.
CROSS_ORIGIN_PREFIXES = ("/plugin/", "/v1/")
PRE_CSRF_COOKIE = "bl_csrf"


def _https(scope: Scope) -> bool:
    return scope.get("scheme") in ("https", "wss")


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = header(scope["headers"], b"origin")
        host = header(scope["headers"], b"host")
        scheme = "https" if _https(scope) else "http"
        if not origin_allowed(origin, self.settings, scheme, host):
            log.warning("WebSocket %s refused: origin %r is not allowed (BONDLINE_ALLOWED_ORIGINS)",
                        scope.get("path"), origin)
            # A handshake refused with 403 reaches the page's script only as
            # close code 1006, "abnormal": a plugin cannot tell it from a network
            # fault and retries for ever. Accepting and closing at once with 4403
            # and a reason tells the integrator what to set; nothing is read.
            await receive()
            await send({"type": "websocket.accept"})
            reason = f"origin {origin} is not allowed: add it to BONDLINE_ALLOWED_ORIGINS"
            if len(reason.encode()) > 123:  # a close reason's limit (RFC 6455)
                reason = "this page's origin is not allowed: add it to BONDLINE_ALLOWED_ORIGINS"
            await send({"type": "websocket.close", "code": 4403, "reason": reason})
            return
        await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        method: str = scope.get("method", "GET")
        headers = scope["headers"]
        scheme = "https" if _https(scope) else "http"
        origin = header(headers, b"origin")
        host = header(headers, b"host")
        scope.setdefault("state", {})
        cors_origin: str | None = None

        if path.startswith(CROSS_ORIGIN_PREFIXES) and origin is not None:
            allowed = origin_allowed(origin, self.settings, scheme, host)
            same = is_same_origin(origin, self.settings, scheme, host)
            if method == "OPTIONS" and header(headers, b"access-control-request-method"):
                await self._preflight(send, path, origin if allowed else None, _https(scope))
                return
            if not allowed:
                if method not in ("GET", "HEAD"):
                    log.warning("%s %s refused: origin %r is not allowed", method, path, origin)
                    await self._plain(send, 403, {"error": f"origin {origin} is not allowed", "code": 4403}, path,
                                      _https(scope))
                    return
            elif not same:
                cors_origin = origin

        limit = self.settings.max_message_bytes
        declared = header(headers, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._plain(send, 413, {"error": f"body of {declared} bytes exceeds {limit}", "code": 4413}, path,
                              _https(scope))
            return

        received = 0
        too_large = False  # we answered 413 ourselves; the app's answer is dropped
        started = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if not started and not too_large:
                        too_large = True
                        await self._plain(send, 413, {"error": f"body exceeds {limit} bytes", "code": 4413}, path,
                                          _https(scope))
                    return {"type": "http.disconnect"}
            return message

        state: dict[str, Any] = scope["state"]

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if too_large:
                return  # our 413 went out instead
            if message["type"] == "http.response.start":
                started = True
                out = list(message.get("headers", []))
                present = {k.lower() for k, _ in out}
                for k, v in security_headers(path, _https(scope)):
                    if k not in present:
                        out.append((k, v))
                if cors_origin is not None:
                    out.append((b"access-control-allow-origin", cors_origin.encode("latin-1")))
                    out.append((b"vary", b"Origin"))
                new_csrf = state.get("bl_new_csrf")
                if new_csrf:
                    cookie = f"{PRE_CSRF_COOKIE}={new_csrf}; Path=/; HttpOnly; SameSite=Strict"
                    if state.get("bl_csrf_secure"):
                        cookie += "; Secure"
                    out.append((b"set-cookie", cookie.encode("latin-1")))
                message = {**message, "headers": out}
            await send(message)

        await self.app(scope, limited_receive, send_with_headers)

    async def _preflight(self, send: Send, path: str, origin: str | None, https: bool) -> None:
        if origin is None:
            await self._plain(send, 403, {"error": "origin not allowed", "code": 4403}, path, https)
            return
        headers = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
            (b"access-control-allow-headers", b"Authorization, Content-Type"),
            (b"access-control-max-age", b"600"),
            (b"vary", b"Origin"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers + security_headers(path, https)})
        await send({"type": "http.response.body", "body": b""})

    async def _plain(self, send: Send, status: int, body: dict[str, Any], path: str, https: bool = False) -> None:
        data = orjson.dumps(body)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": status,
                    "headers": headers + security_headers(path, https)})
        await send({"type": "http.response.body", "body": data})
