"""``bondline import webrtc-internals FILE --session ID --role ROLE`` (and ``rtcstats``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from server.cli.options import add_db_option, settings_from


def cmd_import(args: argparse.Namespace) -> int:
    # imported when the command runs: `bondline --help` and other commands stay fast
    from server.importers.dump_import import ImportRefused, import_dump
    from server.importers.dumps import DumpError
    from server.store.db import make_engine

    settings = settings_from(args)
    engine = make_engine(settings.sqlalchemy_url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        res = import_dump(engine, settings, Path(args.file), args.session, args.role, args.pc or None)
    except (DumpError, ImportRefused) as e:
        print(f"bondline import: error: {e}; nothing was stored", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    if res.format != args.expected and args.expected != "any":
        print(f"note: {args.file} is an {res.format} dump; imported it as such", file=sys.stderr)
    print(f"imported {res.samples} samples (seq {res.first_seq}..{(res.first_seq or 0) + res.samples - 1}) and "
          f"{res.events} events from {res.connections} connection(s) of a {res.format} dump "
          f"into session {args.session} ({args.role})")
    for cov in res.coverage:
        for line in cov.lines():
            print(line)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    imp = sub.add_parser("import", help="import call statistics recorded elsewhere",
                         description="Import call statistics recorded outside Bondline as samples (source 'import').")
    isub = imp.add_subparsers(dest="import_command", required=True, metavar="FORMAT")
    for name, what in (("webrtc-internals", "a chrome://webrtc-internals dump (.txt or .gz)"),
                       ("rtcstats", "an rtcstats dump saved from chrome://webrtc-internals (plain or .gz)")):
        p = isub.add_parser(name, help=f"import {what}", description=f"Import {what}. Either dump format is "
                            "recognised from the file's content; a bad or truncated file stores nothing.")
        p.add_argument("file", metavar="FILE")
        p.add_argument("--session", type=int, required=True, metavar="ID", help="session id")
        p.add_argument("--role", required=True, choices=["clinician", "client"], help="whose browser made the dump")
        p.add_argument("--pc", action="append", metavar="KEY",
                       help="import only this connection (a PeerConnections key such as 9-1); repeatable. Needed "
                            "when the dump holds connections of more than one participant (the error lists them)")
        add_db_option(p)
        p.set_defaults(handler=cmd_import, expected=name)
