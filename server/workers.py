"""``bondline serve --workers N``: N server processes sharing one port.

One process tops out at about one core: Python runs one thread at a time,
and at a few thousand 1 Hz collectors the WebSocket stack alone keeps the
event loop busy (docs/performance.md, "Telemetry ingest"). More cores need
more processes. Each worker binds its own listening socket with
SO_REUSEPORT, so the kernel spreads new connections over the workers by
address hash; with uvicorn's own ``--workers`` all share one socket, and a
burst of reconnects can land on a single process.

Nothing that makes ingest exactly-once lives in a process: samples are keyed
by (participant, seq) in the store and every worker writes through its own
group-commit writer. A worker that dies is started again; its collectors
reconnect (to any worker), learn ``lastSeq`` and resend what was not
acknowledged.

Start-up work that must happen once (migrations, the first admin account,
the admin API key of a run without one) is done here, before any worker.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import secrets
import signal
import socket
import threading
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

from server.config import Settings
from server.http_timeouts import timed_protocol

log = logging.getLogger("bondline.workers")

@dataclass(frozen=True)
class ServeOptions:
    """How ``bondline serve`` listens (the settings say what it serves)."""

    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    workers: int = 1
    demo: bool = False


def uvicorn_options(settings: Settings, options: ServeOptions) -> dict[str, Any]:
    """uvicorn settings shared by the single-process and multi-worker modes."""
    return {
        "host": options.host,
        "port": options.port,
        "log_level": options.log_level,
        # Our own size check answers with a readable 4413; uvicorn's limit
        # only backstops memory against far larger frames.
        "ws_max_size": settings.max_message_bytes * 2 + 1024,
        "ws_ping_interval": 20,
        "ws_ping_timeout": 20,
        "access_log": options.log_level == "debug",
        # Deadlines on each request's headers and body (slowloris; docs/deploy.md).
        "http": timed_protocol(settings.http_header_timeout_s, settings.http_body_timeout_s),
    }


def serve_one(settings: Settings, options: ServeOptions) -> int:
    """One server process in the foreground (migrates first)."""
    import uvicorn

    from server.app import create_app
    from server.retention.schedule import RetentionSchedule

    app = create_app(settings, demo=options.demo)
    schedule = RetentionSchedule(settings).start()
    try:
        uvicorn.run(app, **uvicorn_options(settings, options))
    finally:
        schedule.stop()
    return 0


# A worker that keeps dying right after start is a bug or a broken store,
# not a crash to paper over: give up rather than spin.
MAX_RESTARTS_PER_MINUTE = 5


def _listen_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _exit_with_parent(parent: int) -> None:
    """A worker whose supervisor was killed (kill -9 included) stops too,
    instead of serving on unsupervised."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="bondline-parent-watch", daemon=True).start()


def worker_main(settings: Settings, options: ServeOptions, parent: int) -> None:
    """Entry point of one worker process (started by ``spawn``); the
    supervisor passes its settings, so every worker runs with the same."""
    import uvicorn

    from server.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _exit_with_parent(parent)
    app = create_app(settings, migrate=False, demo=options.demo)
    sock = _listen_socket(options.host, options.port)
    config = uvicorn.Config(app, **uvicorn_options(settings, options))
    uvicorn.Server(config).run(sockets=[sock])


def _prepare_once(settings: Settings) -> Settings:
    from server.accounts.bootstrap import ensure_first_admin
    from server.store.db import make_engine, upgrade

    upgrade(settings.sqlalchemy_url)
    engine = make_engine(settings.sqlalchemy_url)
    try:
        ensure_first_admin(engine, settings)
    finally:
        engine.dispose()
    if settings.admin_api_key:
        return settings
    # Every worker must accept the same key.
    key = secrets.token_urlsafe(24)
    log.warning("BONDLINE_ADMIN_API_KEY is not set; this run's admin API key is: %s", key)
    return settings.model_copy(update={"admin_api_key": key})


def serve_workers(settings: Settings, options: ServeOptions) -> int:
    """Run ``options.workers`` workers until SIGINT or SIGTERM."""
    settings = _prepare_once(settings)
    # spawn, not fork: a forked child would inherit this process's database
    # connections and threads.
    ctx = mp.get_context("spawn")
    parent = os.getpid()
    stopping = threading.Event()

    def start(index: int) -> BaseProcess:
        proc = ctx.Process(target=worker_main, args=(settings, options, parent), name=f"bondline-worker-{index}")
        proc.start()
        log.info("worker %d started (pid %s)", index, proc.pid)
        return proc

    def stop(_signum: int, _frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    workers = [start(i) for i in range(options.workers)]
    # Retention runs here, once, not in every worker.
    from server.retention.schedule import RetentionSchedule

    schedule = RetentionSchedule(settings).start()
    restarts: list[float] = []
    status = 0
    while not stopping.wait(0.5):
        for i, proc in enumerate(workers):
            if proc.is_alive():
                continue
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < 60] + [now]
            if len(restarts) > MAX_RESTARTS_PER_MINUTE:
                log.error("workers keep exiting (%d restarts in a minute); stopping", len(restarts) - 1)
                stopping.set()
                status = 1
                break
            log.warning("worker %d (pid %s) exited with code %s; starting it again", i, proc.pid, proc.exitcode)
            workers[i] = start(i)
    schedule.stop()
    for proc in workers:
        if proc.is_alive() and proc.pid is not None:
            os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in workers:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
    return status
