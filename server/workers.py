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

import argparse
import logging
import multiprocessing as mp
import os
import secrets
import signal
import socket
import threading
import time
from multiprocessing.process import BaseProcess
from typing import Any

from server.config import Settings

log = logging.getLogger("bondline.workers")

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


def worker_main(args: argparse.Namespace, parent: int) -> None:
    """Entry point of one worker process (started by ``spawn``)."""
    import uvicorn

    from server.app import create_app
    from server.cli import uvicorn_options
    from server.config import get_settings
    from server.demo.cli import mark_demo

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _exit_with_parent(parent)
    settings = get_settings()
    app = create_app(settings, migrate=False)
    mark_demo(app, args)
    sock = _listen_socket(args.host, args.port)
    config = uvicorn.Config(app, **uvicorn_options(settings, args))
    uvicorn.Server(config).run(sockets=[sock])


def _prepare_once(settings: Settings) -> None:
    from server.accounts.bootstrap import ensure_first_admin
    from server.store.db import make_engine, upgrade

    upgrade(settings.sqlalchemy_url)
    engine = make_engine(settings.sqlalchemy_url)
    try:
        ensure_first_admin(engine, settings)
    finally:
        engine.dispose()
    if not settings.admin_api_key:
        # Every worker must accept the same key; workers read it from the
        # environment they inherit.
        key = secrets.token_urlsafe(24)
        os.environ["BONDLINE_ADMIN_API_KEY"] = key
        log.warning("BONDLINE_ADMIN_API_KEY is not set; this run's admin API key is: %s", key)


def serve_workers(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``args.workers`` workers until SIGINT or SIGTERM."""
    _prepare_once(settings)
    # spawn, not fork: a forked child would inherit this process's database
    # connections and threads.
    ctx = mp.get_context("spawn")
    parent = os.getpid()
    stopping = threading.Event()

    def start(index: int) -> BaseProcess:
        proc = ctx.Process(target=worker_main, args=(args, parent), name=f"bondline-worker-{index}")
        proc.start()
        log.info("worker %d started (pid %s)", index, proc.pid)
        return proc

    def stop(_signum: int, _frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    workers = [start(i) for i in range(args.workers)]
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
    for proc in workers:
        if proc.is_alive() and proc.pid is not None:
            os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in workers:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
    return status
