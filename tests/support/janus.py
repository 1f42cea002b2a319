"""A real Janus Gateway (Debian's ``janus``) for SFU tests.

Janus 1.1.2 never gathers loopback candidates, and libnice binds each
candidate socket to its interface (/work/shared/webrtc-field-notes.md), so
Janus runs in a network namespace of its own behind a veth pair on a private
/30 of this machine: Janus on ``ns_ip``, the host end on ``host_ip``. Nothing
leaves the machine. Browsers reach it only through a TURN server relaying on
``host_ip`` (tests/support/turn.py with ``relay_ip``), so a UDP relay in
front of that TURN server (tests/support/udp_impair.py) sees every media
packet of that participant.

Its configuration is written to a directory of its own: VideoRoom plugin
only, WebSocket transport only (on ``ns_ip``; HTTP and admin transports
off), and optionally the sample HTTP event handler posting to ``events_url``
(an address the namespace can reach: use :class:`TcpForward` on ``host_ip``
in front of a server that listens on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import http.server
import os
import random
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

LIBDIR = Path("/usr/lib/x86_64-linux-gnu/janus")
JANUS_JS = Path("/usr/share/javascript/janus-gateway/janus.js")
ADAPTER_JS = Path("/usr/share/javascript/webrtc-adapter/adapter.js")
KEEP = {"plugins": "libjanus_videoroom.so", "transports": "libjanus_websockets.so", "events": "libjanus_sampleevh.so"}


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=20)


def _others(folder: str) -> str:
    """Every module of ``folder`` except the one we use, for Janus's ``disable`` lists."""
    names = sorted(p.name for p in (LIBDIR / folder).glob("*.so"))
    return ",".join(n for n in names if n != KEEP.get(folder))


@dataclass
class VethNamespace:
    """A network namespace joined to this one by a veth pair on a private /30."""

    tag: str = field(default_factory=lambda: f"{os.getpid() % 10000}{random.randrange(100):02d}")
    subnet: int = field(default_factory=lambda: random.randrange(1, 250))
    block: int = field(default_factory=lambda: random.randrange(0, 63) * 4)

    @property
    def name(self) -> str:
        return f"blj{self.tag}"

    @property
    def host_ip(self) -> str:
        return f"10.213.{self.subnet}.{self.block + 1}"

    @property
    def ns_ip(self) -> str:
        return f"10.213.{self.subnet}.{self.block + 2}"

    @property
    def ns_if(self) -> str:
        return f"bjn{self.tag}"

    def create(self) -> VethNamespace:
        host_if = f"bjh{self.tag}"
        _run("ip", "netns", "add", self.name)
        try:
            _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", self.ns_if)
            _run("ip", "link", "set", self.ns_if, "netns", self.name)
            _run("ip", "addr", "add", f"{self.host_ip}/30", "dev", host_if)
            _run("ip", "link", "set", host_if, "up")
            _run("ip", "netns", "exec", self.name, "ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
            _run("ip", "netns", "exec", self.name, "ip", "link", "set", self.ns_if, "up")
            _run("ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up")
        except Exception:
            self.delete()
            raise
        return self

    def delete(self) -> None:
        # Deleting the namespace deletes its veth end, and with it the pair.
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, timeout=20)


def wait_tcp(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


@dataclass
class Janus:
    workdir: Path
    net: VethNamespace
    ws_port: int = 8188
    room: int = 1234
    events_url: str | None = None
    events_password: str | None = None  # sent with HTTP basic auth (backend_pwd)
    stats_period_s: int = 1
    proc: subprocess.Popen[bytes] | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://{self.net.ns_ip}:{self.ws_port}/"

    @property
    def log_path(self) -> Path:
        return self.workdir / "janus.log"

    def _write_config(self, cfg: Path) -> None:
        cfg.mkdir(parents=True, exist_ok=True)
        events = ""
        if self.events_url:
            events = f"broadcast = true\n\tstats_period = {self.stats_period_s}\n\tdisable = \"{_others('events')}\""
        (cfg / "janus.jcfg").write_text(f"""general: {{
\tconfigs_folder = "{cfg}"
\tplugins_folder = "{LIBDIR / 'plugins'}"
\ttransports_folder = "{LIBDIR / 'transports'}"
\tevents_folder = "{LIBDIR / 'events'}"
\tloggers_folder = "{LIBDIR / 'loggers'}"
\tdebug_level = 4
\tadmin_secret = "{os.urandom(8).hex()}"
\tinterface = "{self.net.ns_ip}"
}}
media: {{
\trtp_port_range = "20000-40000"
}}
nat: {{
\tnice_debug = false
\tice_enforce_list = "{self.net.ns_if}"
\tignore_mdns = true
}}
plugins: {{
\tdisable = "{_others('plugins')}"
}}
transports: {{
\tdisable = "{_others('transports')}"
}}
loggers: {{
\tdisable = "{_others('loggers')}"
}}
events: {{
\t{events}
}}
""")
        (cfg / "janus.transport.websockets.jcfg").write_text(f"""general: {{
\tjson = "plain"
\tws = true
\tws_port = {self.ws_port}
\tws_ip = "{self.net.ns_ip}"
\twss = false
}}
admin: {{
\tadmin_ws = false
\tadmin_wss = false
}}
""")
        # One room, open (no secret): the test's two participants meet there.
        (cfg / "janus.plugin.videoroom.jcfg").write_text(f"""general: {{
}}
room-{self.room}: {{
\tdescription = "Bondline test room"
\tpublishers = 6
\tbitrate = 512000
\tfir_freq = 10
\trecord = false
}}
""")
        if self.events_url:
            pwd = self.events_password
            auth = f'\tbackend_user = "janus"\n\tbackend_pwd = "{pwd}"\n' if pwd else ""
            (cfg / "janus.eventhandler.sampleevh.jcfg").write_text(f"""general: {{
\tenabled = true
\tevents = "media"
\tgrouping = true
\tjson = "plain"
\tbackend = "{self.events_url}"
{auth}\tmax_retransmissions = 5
\tretransmissions_backoff = 100
}}
""")

    def start(self, timeout: float = 20.0) -> Janus:
        exe = shutil.which("janus")
        if exe is None:
            raise RuntimeError("Janus is not installed (scripts/install-system-deps.sh installs it)")
        cfg = self.workdir / "config"
        self._write_config(cfg)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.net.name, exe, "-F", str(cfg), "-C", str(cfg / "janus.jcfg"),
             "--disable-colors"],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"janus exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            if wait_tcp(self.net.ns_ip, self.ws_port, 0.3):
                return self
        self.stop()
        raise RuntimeError(f"janus did not open its WebSocket port:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


class TcpForward:
    """Listen on ``host:0`` and forward every connection to 127.0.0.1:``upstream_port``.

    Lets Janus, in its namespace, post events to a server that listens on
    loopback only."""

    def __init__(self, host: str, upstream_port: int) -> None:
        self.host = host
        self.upstream_port = upstream_port
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-forward", daemon=True)

    def start(self) -> TcpForward:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, self.host, 0), self._loop).result(10)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))



class PageServer:
    """The platform's own web server: serves call pages and Debian's adapter.js and janus.js.

    On 127.0.0.1 with a port (so an origin) of its own, as a platform's call
    page is on another origin than Bondline: the Bondline server must list it
    in BONDLINE_ALLOWED_ORIGINS, and the page loads bondline.js from Bondline."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {
            "blank.html": "<!doctype html><html><head><meta charset=utf-8></head><body></body></html>"}
        files = {"adapter.js": ADAPTER_JS, "janus.js": JANUS_JS}
        pages = self.pages

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                name = self.path.lstrip("/").split("?", 1)[0]
                if name in files:
                    body, ctype = files[name].read_bytes(), "text/javascript"
                elif name in pages:
                    body, ctype = pages[name].encode(), "text/html; charset=utf-8"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="page-server", daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PageServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
