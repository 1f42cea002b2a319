"""`bondline user ...` and `bondline apikey ...` against a real database and server."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import httpx

from tests.support.login import csrf_from, login


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "BONDLINE_NEW_PASSWORD"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "server.cli", *args], capture_output=True, text=True, timeout=120,
                          env=full_env)


def test_user_and_apikey_commands(server_factory, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    r = cli("user", "add", "Ann@Example.org", "--db", sqlite_url)
    assert r.returncode == 0, r.stderr
    otp = re.search(r"one-time password: (\S+)", r.stdout)
    assert otp and "created clinician account ann@example.org" in r.stdout
    r = cli("user", "add", "ann@example.org", "--db", sqlite_url)
    assert r.returncode == 1 and "already exists" in r.stderr
    r = cli("user", "add", "boss@example.org", "--admin", "--db", sqlite_url,
            env={"BONDLINE_NEW_PASSWORD": "the boss's passphrase"})
    assert r.returncode == 0 and "one-time" not in r.stdout and "admin account" in r.stdout
    r = cli("user", "add", "weak@example.org", "--db", sqlite_url, env={"BONDLINE_NEW_PASSWORD": "short"})
    assert r.returncode != 0 and "at least 10" in r.stderr
    listing = cli("user", "list", "--db", sqlite_url).stdout
    assert re.search(r"ann@example\.org\t$", listing, re.M) and re.search(r"boss@example\.org\tadmin$", listing, re.M)
    r = cli("apikey", "add", "Acme Telehealth", "--db", sqlite_url)
    key = re.search(r"^(blk_\S+)$", r.stdout, re.M)
    assert r.returncode == 0 and key

    srv = server_factory(sqlite_url)
    # An admin made by the CLI exists, so no first-admin password is printed.
    assert "with one-time password" not in srv.log_path.read_text()
    headers = {"Authorization": f"Bearer {key.group(1)}"}
    r = httpx.post(srv.base + "/api/v1/sessions", headers=headers,
                   json={"clinician": "ann@example.org", "client_code": "C-1"})
    assert r.status_code == 201
    # The one-time password logs in, straight to the password change.
    with httpx.Client() as c:
        page = c.get(srv.base + "/login")
        r = c.post(srv.base + "/login", data={"email": "ann@example.org", "password": otp.group(1),
                                              "csrf_token": csrf_from(page.text)}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/account/password")
    with httpx.Client() as boss:
        login(boss, srv.base, "boss@example.org", "the boss's passphrase")
        # A password reset from the CLI ends the account's logins.
        r = cli("user", "password", "boss@example.org", "--db", sqlite_url)
        assert r.returncode == 0 and "one-time password" in r.stdout
        assert boss.get(srv.base + "/admin/users", follow_redirects=False).status_code == 303
    # Revoked from the CLI while the server runs: refused at once.
    assert cli("apikey", "revoke", "1", "--db", sqlite_url).returncode == 0
    assert httpx.get(srv.base + "/api/v1/sessions", headers=headers).status_code == 403
    assert cli("apikey", "revoke", "1", "--db", sqlite_url).returncode == 1
