"""``bondline demo``: generate the synthetic demo caseload into its own database."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DEFAULT_DB = "bondline-demo.db"


def sqlite_path(db: str) -> Path | None:
    if db.startswith(("postgresql", "postgres:")):
        return None
    return Path(db.removeprefix("sqlite:///")).expanduser()


def generate(db: str, seed: int, *, effect: float | None = None, clinicians: int = 3, clients: int = 4,
             sessions: tuple[int, int] = (6, 20), quiet: bool = False) -> Any:
    from server.demo.build import build_demo
    from server.demo.plan import RatingModel

    model = RatingModel() if effect is None else RatingModel(effect=effect)
    say = (lambda _m: None) if quiet else (lambda m: print(m, flush=True))
    say(f"Generating the SYNTHETIC demo caseload into {db} (seed {seed}) ...")
    result = build_demo(db, seed, model=model, clinicians=clinicians, clients_per_clinician=clients,
                        sessions=sessions, progress=say)
    print(
        f"Demo caseload ready: {result.clients} clients, {result.sessions} sessions, {result.samples} samples, "
        f"{result.ratings} ratings in {result.seconds:.1f} s. All of it is synthetic.\n"
        f"Rating model: client bond changes by {model.effect:+.3f} per disrupted minute "
        f"(plus noise; docs/reports.md, 'Demo caseload').\nDemo logins (these passwords are shown only now):",
        flush=True,
    )
    for email, password in result.logins:
        print(f"  {email}  password: {password}", flush=True)
    return result


def cmd_demo(args: argparse.Namespace) -> int:
    path = sqlite_path(args.db)
    if path is not None and path.exists():
        if not args.force:
            print(f"{path} already exists; pass --force to replace it with a new demo caseload.", file=sys.stderr)
            return 2
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    from server.demo.build import DemoError

    try:
        lo, hi = args.sessions
        if not 1 <= lo <= hi:
            print("demo: --sessions needs 1 <= MIN <= MAX", file=sys.stderr)
            return 2
        generate(args.db, args.seed, effect=args.effect, clinicians=args.clinicians, clients=args.clients,
                 sessions=(lo, hi))
    except DemoError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 2
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo", help="generate a synthetic demo caseload (separate database)",
        description="Generate a clearly labelled SYNTHETIC caseload (clinicians with demo logins, clients, "
        "second-by-second telemetry, ratings) into its own database. Never mix it with real data.",
    )
    p.add_argument("--db", default=DEFAULT_DB, metavar="PATH-or-URL",
                   help=f"database to create (default ./{DEFAULT_DB}); must be new or empty")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1): same seed, same caseload")
    p.add_argument("--effect", type=float, default=None,
                   help="change in client bond per disrupted minute in the rating model (default -0.04)")
    p.add_argument("--clinicians", type=int, default=3, help="clinicians (default 3)")
    p.add_argument("--clients", type=int, default=4, help="clients per clinician (default 4)")
    p.add_argument("--sessions", type=int, nargs=2, default=(6, 20), metavar=("MIN", "MAX"),
                   help="sessions per client, drawn between MIN and MAX (default 6 20)")
    p.add_argument("--force", action="store_true", help="replace an existing demo SQLite file")
    p.set_defaults(handler=cmd_demo)
