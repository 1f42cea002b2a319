"""``bondline serve``: run the server, in one process or several."""

from __future__ import annotations

import argparse
import logging

from server import __version__
from server.cli.demo import DEFAULT_DB, generate, sqlite_path
from server.cli.options import add_db_option, settings_from


def cmd_serve(args: argparse.Namespace) -> int:
    # imported when the command runs: `bondline --help` and other commands stay fast
    from server.workers import ServeOptions, serve_one, serve_workers

    if args.demo:
        # The demo caseload lives in its own database, made on first use.
        args.db = args.db or DEFAULT_DB
        path = sqlite_path(args.db)
        if path is not None and not path.exists():
            generate(args.db, 1)
    settings = settings_from(args)
    options = ServeOptions(host=args.host, port=args.port, log_level=args.log_level, workers=args.workers,
                           demo=args.demo)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    workers = f", {options.workers} workers" if options.workers > 1 else ""
    print(f"Bondline {__version__} on http://{options.host}:{options.port}/  (store: {settings.sqlalchemy_url}"
          f"{workers})", flush=True)
    if options.workers > 1:
        return serve_workers(settings, options)
    return serve_one(settings, options)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    add_db_option(serve)
    serve.set_defaults(handler=cmd_serve)
