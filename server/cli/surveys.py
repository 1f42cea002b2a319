"""``bondline instruments``: list the instruments a server would offer, and
check instrument files (a clinic's new file) before deploying them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def cmd_list(args: argparse.Namespace) -> int:
    # imported when the command runs: `bondline --help` and other commands stay fast
    from server.config import load_settings
    from server.surveys.instruments import InstrumentError
    from server.surveys.registry import load_for

    try:
        registry = load_for(load_settings())
    except InstrumentError as e:
        print(f"error: {e}")
        return 1
    for inst in registry.all():
        print(f"{inst.id:24} {inst.version:8} {inst.respondent:9} {len(inst.items):3} items  {inst.title}")
    for respondent, ids in registry.defaults.items():
        print(f"default for the {respondent}: {', '.join(ids) or '(none)'}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from server.surveys.instruments import InstrumentError, instrument_files, load_file

    failed = 0
    for name in args.paths:
        path = Path(name)
        try:
            files = instrument_files(path) if path.is_dir() else [path]
            for f in files:
                inst = load_file(f)
                print(f"ok  {f}: {inst.id} {inst.version} ({len(inst.items)} items)")
        except InstrumentError as e:
            failed += 1
            print(f"bad {e}")
    return 1 if failed else 0


def cmd_fhir(args: argparse.Namespace) -> int:
    from server.config import load_settings
    from server.surveys.fhir import questionnaire
    from server.surveys.instruments import InstrumentError
    from server.surveys.registry import load_for

    try:
        inst = load_for(load_settings()).get(args.instrument)
    except InstrumentError as e:
        print(f"error: {e}")
        return 1
    print(json.dumps(questionnaire(inst, args.base.rstrip("/")), indent=2, ensure_ascii=False))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "instruments", help="survey instruments", description="Survey instruments (docs/instruments.md)."
    )
    isub = p.add_subparsers(dest="instruments_command", required=True, metavar="COMMAND")
    ls = isub.add_parser("list", help="list the instruments this server offers ($BONDLINE_INSTRUMENTS_DIR included)")
    ls.set_defaults(handler=cmd_list)
    check = isub.add_parser("check", help="check instrument files or directories")
    check.add_argument("paths", nargs="+", metavar="PATH")
    check.set_defaults(handler=cmd_check)
    fh = isub.add_parser("fhir", help="print an instrument as a FHIR R4 Questionnaire")
    fh.add_argument("instrument")
    fh.add_argument("--base", default="http://127.0.0.1:8000", help="server base URL for canonical URLs")
    fh.set_defaults(handler=cmd_fhir)
