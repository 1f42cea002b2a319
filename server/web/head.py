"""HEAD answers as GET does, without the body (RFC 9110, section 9.3.2).

Starlette routes a HEAD only where a route lists it, so every page answered
405; link checkers, uptime monitors and proxies send HEAD first. The
request is routed as a GET and the response body is dropped, so headers
(status, type, length, ETag) are exactly those of the GET.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)
