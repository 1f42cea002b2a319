"""Options several command groups share, and the settings they select."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.config import Settings


def add_db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="URL-or-path",
        help="SQLite file path or postgresql://... URL (default: $BONDLINE_DATABASE_URL or ./bondline.db)",
    )


def settings_from(args: argparse.Namespace) -> Settings:
    """The settings a command runs with: the environment's, with ``--db``
    (where the command has it) in place of BONDLINE_DATABASE_URL."""
    # imported when the command runs: `bondline --help` and other commands stay fast
    from server.config import load_settings

    return load_settings(getattr(args, "db", None))
