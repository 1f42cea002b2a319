"""Header and body timeouts for uvicorn's HTTP protocol (slowloris).

uvicorn has a keep-alive timeout between requests but none while a request
arrives: a client that sends half its headers, or a body one byte at a time,
holds a connection (and its buffers) for as long as it likes, and enough
such clients hold the server. This protocol gives a request's headers
``header_timeout_s`` from the connection's opening or the request's first
byte, and its body ``body_timeout_s`` after the headers; a request late in
either is answered 408 and its connection closed (docs/deploy.md,
"Timeouts"). WebSocket upgrades leave this protocol once their headers are
in: their own timeouts (auth, pings) take over.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def _response_408(what: str) -> bytes:
    body = f"the request's {what} took too long to arrive".encode()
    return (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)


class TimedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on each request's headers and body."""

    header_timeout_s = 10.0
    body_timeout_s = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._late, what)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _late(self, what: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if what == "body" and cycle is not None:
            if cycle.response_started:
                # Answered already (say, 413 before reading the body): just close.
                self.transport.close()
                return
            # The application stops waiting for the body and its answer is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self.logger.info("closing a connection from %s: its request's %s took too long", self.client, what)
        self.transport.write(_response_408(what))
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout_s, "headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self.header_timeout_s, "headers")

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self.parser.should_upgrade() and self._should_upgrade():
            self._disarm()
        else:
            self._arm(self.body_timeout_s, "body")

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        super().handle_websocket_upgrade()


def timed_protocol(header_timeout_s: float, body_timeout_s: float) -> type[TimedHttpProtocol]:
    """The protocol class for uvicorn's ``http`` option, with these timeouts."""
    return type("BondlineHttpProtocol", (TimedHttpProtocol,),
                {"header_timeout_s": header_timeout_s, "body_timeout_s": body_timeout_s})
