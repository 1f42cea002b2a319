"""The ``bondline`` command line.

Each feature adds its own sub-commands through a ``register(subparsers)``
function listed in ``REGISTRARS``, so this file stays a table of contents.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from server import __version__
from server.config import Settings, get_settings, normalise_database_url

Handler = Callable[[argparse.Namespace], int]


def _settings(args: argparse.Namespace) -> Settings:
    db = getattr(args, "db", None)
    if db:
        os.environ["BONDLINE_DATABASE_URL"] = db
        get_settings.cache_clear()
    return get_settings()


def uvicorn_options(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """uvicorn settings shared by the single-process and multi-worker modes."""
    return {
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level,
        # Our own size check answers with a readable 4413; uvicorn's limit
        # only backstops memory against far larger frames.
        "ws_max_size": settings.max_message_bytes * 2 + 1024,
        "ws_ping_interval": 20,
        "ws_ping_timeout": 20,
        "access_log": args.log_level == "debug",
    }


def cmd_serve(args: argparse.Namespace) -> int:
    from server.demo.cli import mark_demo, prepare_serve

    prepare_serve(args)
    settings = _settings(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    workers = f", {args.workers} workers" if args.workers > 1 else ""
    print(f"Bondline {__version__} on http://{args.host}:{args.port}/  (store: {settings.sqlalchemy_url}{workers})",
          flush=True)
    if args.workers > 1:
        from server.workers import serve_workers

        return serve_workers(args, settings)

    import uvicorn

    from server.app import create_app

    app = create_app(settings)
    mark_demo(app, args)
    uvicorn.run(app, **uvicorn_options(settings, args))
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from server.store.db import current_revision, upgrade

    settings = _settings(args)
    url = settings.sqlalchemy_url
    upgrade(url, args.revision)
    print(f"database at revision {current_revision(url)} ({url})")
    return 0


def _add_db_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        metavar="URL-or-path",
        help="SQLite file path or postgresql://... URL (default: $BONDLINE_DATABASE_URL or ./bondline.db)",
    )


def register_core(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="run the Bondline server", description="Run the Bondline server "
                           "(HTTP, WebSocket ingest, web pages). Migrates the database first.")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="server processes sharing the port (default 1); one process uses about one core, "
                       "see docs/deploy.md")
    serve.add_argument("--demo", action="store_true", help="serve the synthetic demo caseload (./bondline-demo.db "
                       "unless --db is given; generated if missing) with a DEMO banner on every page")
    _add_db_option(serve)
    serve.set_defaults(handler=cmd_serve)

    db = sub.add_parser("db", help="database maintenance", description="Database maintenance.")
    dbsub = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    up = dbsub.add_parser("upgrade", help="apply migrations", description="Apply schema migrations.")
    up.add_argument("revision", nargs="?", default="heads", help="target revision (default: heads, every branch)")
    _add_db_option(up)
    up.set_defaults(handler=cmd_db_upgrade)


def register_accounts(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from server.accounts.cli import register

    register(sub)


def register_plugin_import(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from plugin.importer import register

    register(sub)


def register_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from server.demo.cli import register

    register(sub)


def register_surveys(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from server.surveys.cli import register

    register(sub)


def register_sidecar(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from server.sidecar.cli import register

    register(sub)


REGISTRARS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    register_core,
    register_accounts,
    register_plugin_import,
    register_demo,
    register_surveys,
    register_sidecar,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bondline",
        description="Bondline: connection quality and therapeutic alliance for telehealth video sessions.",
    )
    parser.add_argument("--version", action="version", version=f"bondline {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in REGISTRARS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["main", "build_parser", "normalise_database_url"]
