"""The retention run on a schedule inside ``bondline serve``.

One scheduler in one process: the single server process, or the supervisor
of ``serve --workers N`` (never the workers, so N workers do not prune N
times). Each run is a child process of its own: rolling a 60-minute
session up costs about 100 ms of CPU, mostly holding the GIL, which in the
server process would stall the ingest event loop. Several nodes on one
PostgreSQL each run the schedule, but only one prunes at a time: a run
takes a session-level advisory lock and skips while another node holds it
(server/retention/prune.py). Were the lock lost, a run would still be safe,
being idempotent and a session per transaction, only wasteful.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
from multiprocessing.process import BaseProcess

from server.config import Settings

log = logging.getLogger("bondline.retention")


def run_once(settings: Settings, pause_s: float) -> None:
    """One retention run (the child process's entry point)."""
    from server.retention.prune import prune
    from server.store.db import make_engine

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = make_engine(settings.sqlalchemy_url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        prune(engine, settings, pause_s=pause_s)
    finally:
        engine.dispose()


class RetentionSchedule:
    def __init__(self, settings: Settings, *, pause_s: float = 0.05) -> None:
        self._settings = settings
        self._pause_s = pause_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._child: BaseProcess | None = None

    def start(self) -> RetentionSchedule:
        if self._settings.retention_interval_minutes > 0:
            self._thread = threading.Thread(target=self._run, name="bondline-retention", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        child = self._child
        if child is not None and child.is_alive():
            # Safe at any point: a run commits a session at a time.
            child.terminate()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        # spawn, not fork: the server's threads and connections stay behind.
        ctx = mp.get_context("spawn")
        interval = self._settings.retention_interval_minutes * 60
        # The first run shortly after start, not at once: start-up has enough to do.
        wait = min(interval, 30.0)
        while not self._stop.wait(wait):
            child = ctx.Process(target=run_once, args=(self._settings, self._pause_s), name="bondline-retention",
                                daemon=True)
            self._child = child
            child.start()
            child.join()
            self._child = None
            if child.exitcode not in (0, None) and not self._stop.is_set():
                log.error("retention run exited with code %s; retrying in %.0f s", child.exitcode, interval)
            wait = interval
