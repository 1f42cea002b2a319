"""The ingest writers of several processes take turns on one SQLite file."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine

from server.store.db import make_engine
from server.store.write_lock import WriteLock, write_lock_for


def test_lock_sits_beside_a_sqlite_file_only(tmp_path: Path) -> None:
    lock = write_lock_for(make_engine(f"sqlite:///{tmp_path / 'b.db'}"))
    assert lock is not None and lock.path == tmp_path / "b.db-writelock"
    assert write_lock_for(create_engine("sqlite://")) is None
    assert write_lock_for(create_engine("postgresql+psycopg://u@127.0.0.1:1/x")) is None


def test_a_second_process_waits_until_the_first_releases(tmp_path: Path) -> None:
    path = tmp_path / "b.db-writelock"
    holder = WriteLock(path)
    acquired = threading.Event()
    with holder.held():
        # Another process, as another `serve --workers` worker would be.
        code = ("import sys; from pathlib import Path; from server.store.write_lock import WriteLock; "
                "l = WriteLock(Path(sys.argv[1]))\nwith l.held(): print('got it', flush=True)")
        proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True,
                                cwd=Path(__file__).resolve().parent.parent)

        def watch() -> None:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() == "got it":
                acquired.set()

        threading.Thread(target=watch, daemon=True).start()
        time.sleep(1.5)
        assert not acquired.is_set(), "the lock was taken twice at once"
    assert acquired.wait(30), "the waiting process never got the lock"
    assert proc.wait(30) == 0
    holder.close()
