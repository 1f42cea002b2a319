"""A TCP proxy in front of the Bondline server that can cut WebSockets only.

Some networks (proxies, captive portals) let plain HTTP through but not
WebSockets; this gate makes that happen on demand, for tests of the HTTP
fallback paths (the browser's sendBeacon flush, the Python uplink's POSTs).
Runs its own event loop in a thread so synchronous tests can use it.
"""

from __future__ import annotations

import asyncio
import threading


class TcpGate:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.block_websockets = False
        self.http_requests = 0
        self.ws_refused = 0
        # Bytes of WebSocket traffic after the handshake request, as sent on the wire
        # (so after permessage-deflate): browser -> server and back.
        self.ws_bytes_up = 0
        self.ws_bytes_down = 0
        self._ws_writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-gate", daemon=True)
        self.port = 0

    def start(self) -> TcpGate:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop).result(10)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut_websockets(self) -> None:
        """Refuse new WebSocket upgrades and drop the open ones (without a close frame)."""
        def cut() -> None:
            self.block_websockets = True
            for w in list(self._ws_writers):
                w.transport.abort()
        self._loop.call_soon_threadsafe(cut)

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for w in list(self._ws_writers):
                w.transport.abort()
        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, count: str | None = None) -> None:
        try:
            while data := await r.read(65536):
                if count is not None:
                    setattr(self, count, getattr(self, count) + len(data))
                w.write(data)
                await w.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            w.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.transport.abort()
            return
        is_ws = b"upgrade: websocket" in head.lower()
        if is_ws and self.block_websockets:
            self.ws_refused += 1
            writer.write(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            await writer.drain()
            writer.transport.abort()
            return
        if not is_ws:
            self.http_requests += 1
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        up_w.write(head)
        if is_ws:
            self._ws_writers.update((writer, up_w))
        try:
            await asyncio.gather(self._pipe(reader, up_w, "ws_bytes_up" if is_ws else None),
                                 self._pipe(up_r, writer, "ws_bytes_down" if is_ws else None))
        finally:
            self._ws_writers.discard(writer)
            self._ws_writers.discard(up_w)
