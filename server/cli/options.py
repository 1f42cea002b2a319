"""Options several command groups share, and the settings they select."""

from __future__ import annotations

import argparse

from server.config import Settings, load_settings


def add_db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="URL-or-path",
        help="SQLite file path or postgresql://... URL (default: $BONDLINE_DATABASE_URL or ./bondline.db)",
    )


def settings_from(args: argparse.Namespace) -> Settings:
    """The settings a command runs with: the environment's, with ``--db``
    (where the command has it) in place of BONDLINE_DATABASE_URL."""
    return load_settings(getattr(args, "db", None))
