"""The command line: help texts and database upgrade."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from server.cli import build_parser


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [[], ["serve"], ["db"], ["db", "upgrade"]])
def test_help(args: list[str]) -> None:
    r = run(*args, "--help")
    assert r.returncode == 0 and "usage: bondline" in r.stdout


def test_every_command_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():  # type: ignore[attr-defined]
        assert p.description or p.format_help(), name


def test_db_upgrade_creates_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    r = run("db", "upgrade", "--db", str(db))
    assert r.returncode == 0, r.stderr
    assert db.exists() and "revision" in r.stdout
