"""The ``bondline`` command line: one module per command group.

Each group has a ``register(subparsers)``; this package only assembles
them. The participant-side commands (``probe``, ``analyze-recording``) are
the plugin's own (plugin/cli.py).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from plugin import cli as plugin_cli
from server import __version__
from server.cli import accounts, db, demo, importers, serve, surveys

Handler = Callable[[argparse.Namespace], int]

GROUPS = (serve, db, accounts, importers, demo, surveys, plugin_cli)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bondline",
        description="Bondline: connection quality and therapeutic alliance for telehealth video sessions.",
    )
    parser.add_argument("--version", action="version", version=f"bondline {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)
