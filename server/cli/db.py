"""``bondline db ...``: database maintenance."""

from __future__ import annotations

import argparse

from server.cli.options import add_db_option, settings_from


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    # imported when the command runs: `bondline --help` and other commands stay fast
    from server.store.db import current_revision, upgrade

    url = settings_from(args).sqlalchemy_url
    upgrade(url, args.revision)
    print(f"database at revision {current_revision(url)} ({url})")
    return 0


def cmd_db_prune(args: argparse.Namespace) -> int:
    from server.retention.prune import prune
    from server.store.db import make_engine, upgrade

    settings = settings_from(args)
    days = settings.sample_retention_days if args.days is None else args.days
    upgrade(settings.sqlalchemy_url)
    engine = make_engine(settings.sqlalchemy_url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        report = prune(engine, settings, days=days, pause_s=args.pause_ms / 1000)
    finally:
        engine.dispose()
    if report.skipped:
        print("another node is pruning this database; nothing done", flush=True)
        return 0
    print(f"rolled up {report.rolled_up} sessions; deleted the raw samples of {report.sessions_pruned} sessions "
          f"that ended more than {days:g} days ago ({report.samples_deleted} samples)", flush=True)
    return 0


def _positive_days(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser("db", help="database maintenance", description="Database maintenance.")
    dbsub = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    up = dbsub.add_parser("upgrade", help="apply migrations", description="Apply schema migrations.")
    up.add_argument("revision", nargs="?", default="heads", help="target revision (default: heads, every branch)")
    add_db_option(up)
    up.set_defaults(handler=cmd_db_upgrade)
    pr = dbsub.add_parser(
        "prune", help="roll up ended sessions and delete old raw samples",
        description="Roll up every ended session, then delete the raw per-second samples of sessions that ended "
        "more than BONDLINE_SAMPLE_RETENTION_DAYS ago (their roll-ups, summaries and events stay). Safe to "
        "interrupt and to rerun (docs/operations.md).",
    )
    pr.add_argument("--days", type=_positive_days, default=None,
                    help="keep raw samples this many days instead of the setting")
    pr.add_argument("--pause-ms", type=float, default=0.0, metavar="MS",
                    help="pause between sessions, to leave the database to a live server's ingest")
    add_db_option(pr)
    pr.set_defaults(handler=cmd_db_prune)
