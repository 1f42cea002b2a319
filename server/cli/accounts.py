"""``bondline user ...`` and ``bondline apikey ...`` commands."""

from __future__ import annotations

import argparse
import getpass
import os
import secrets
import sys
from typing import TYPE_CHECKING

from server.cli.options import add_db_option, settings_from

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def _engine(args: argparse.Namespace) -> Engine:
    # imported when the command runs: `bondline --help` and other commands stay fast
    from server.store.db import make_engine, upgrade

    url = settings_from(args).sqlalchemy_url
    upgrade(url)
    return make_engine(url)


def _new_password(args: argparse.Namespace, email: str) -> tuple[str, bool]:
    """(password, one_time). Reads BONDLINE_NEW_PASSWORD, a prompt, or makes one."""
    from server.accounts.passwords import policy_problem

    from_env = os.environ.get("BONDLINE_NEW_PASSWORD")
    if from_env:
        password = from_env
    elif args.password_prompt:
        password = getpass.getpass(f"Password for {email}: ")
        if getpass.getpass("Again: ") != password:
            raise SystemExit("the two passwords differ")
    else:
        return secrets.token_urlsafe(12), True
    problem = policy_problem(password, email)
    if problem:
        raise SystemExit(problem)
    return password, False


def cmd_user_add(args: argparse.Namespace) -> int:
    from server.accounts import service

    engine = _engine(args)
    password, one_time = _new_password(args, args.email)
    try:
        with engine.begin() as conn:
            clinician_id = service.create_user(conn, args.email, password, is_admin=args.admin,
                                               display_name=args.name or "", must_change=one_time)
    except service.AccountError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    kind = "admin" if args.admin else "clinician"
    print(f"created {kind} account {service.normalise_email(args.email)} (id {clinician_id})")
    if one_time:
        print(f"one-time password: {password}  (to be changed at first login)")
    return 0


def cmd_user_password(args: argparse.Namespace) -> int:
    from server.accounts import service

    engine = _engine(args)
    password, one_time = _new_password(args, args.email)
    try:
        with engine.begin() as conn:
            account = service.find_account(conn, args.email)
            if account is None:
                print(f"error: no account {args.email}", file=sys.stderr)
                return 1
            service.set_password(conn, account.id, password, must_change=one_time)
    finally:
        engine.dispose()
    print(f"password set for {account.email}; its logins were ended")
    if one_time:
        print(f"one-time password: {password}  (to be changed at first login)")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    from server.accounts import service

    engine = _engine(args)
    try:
        with engine.connect() as conn:
            for a in service.list_accounts(conn):
                flags = [f for f, on in (("admin", a.is_admin), ("disabled", a.disabled),
                                         ("no-password", not a.has_password)) if on]
                print(f"{a.id}\t{a.email}\t{','.join(flags)}")
    finally:
        engine.dispose()
    return 0


def cmd_apikey_add(args: argparse.Namespace) -> int:
    from server.accounts import apikeys

    engine = _engine(args)
    try:
        with engine.begin() as conn:
            key_id, key = apikeys.create_key(conn, args.name)
    finally:
        engine.dispose()
    print(f"created API key {key_id} ({args.name}); it is shown only now:\n{key}")
    return 0


def cmd_apikey_revoke(args: argparse.Namespace) -> int:
    from server.accounts import apikeys

    engine = _engine(args)
    try:
        with engine.begin() as conn:
            done = apikeys.revoke_key(conn, args.id)
    finally:
        engine.dispose()
    print(f"revoked API key {args.id}" if done else f"no live API key {args.id}")
    return 0 if done else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = sub.add_parser("user", help="clinician and admin accounts", description="Manage accounts.")
    usub = user.add_subparsers(dest="user_command", required=True, metavar="COMMAND")
    add = usub.add_parser("add", help="create an account", description=(
        "Create an account. Without --password-prompt (or BONDLINE_NEW_PASSWORD) a one-time password "
        "is generated and printed; it must be changed at first login."))
    add.add_argument("email")
    add.add_argument("--admin", action="store_true", help="may manage accounts and API keys")
    add.add_argument("--name", help="display name")
    add.add_argument("--password-prompt", action="store_true", help="ask for the password instead")
    add_db_option(add)
    add.set_defaults(handler=cmd_user_add)

    pw = usub.add_parser("password", help="set a new password (ends the account's logins)")
    pw.add_argument("email")
    pw.add_argument("--password-prompt", action="store_true", help="ask for the password instead")
    add_db_option(pw)
    pw.set_defaults(handler=cmd_user_password)

    ls = usub.add_parser("list", help="list accounts")
    add_db_option(ls)
    ls.set_defaults(handler=cmd_user_list)

    key = sub.add_parser("apikey", help="integrator API keys", description="Manage integrator API keys.")
    ksub = key.add_subparsers(dest="apikey_command", required=True, metavar="COMMAND")
    kadd = ksub.add_parser("add", help="create a key (printed once)")
    kadd.add_argument("name", help="who the key is for, e.g. the platform's name")
    add_db_option(kadd)
    kadd.set_defaults(handler=cmd_apikey_add)
    krev = ksub.add_parser("revoke", help="revoke a key by id")
    krev.add_argument("id", type=int)
    add_db_option(krev)
    krev.set_defaults(handler=cmd_apikey_revoke)
