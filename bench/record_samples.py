"""Record a real Chromium call's samples once, for bench/ingest.py to replay.

Two headless Chromium pages (Debian's /usr/bin/chromium, fake camera and
microphone) hold a WebRTC call over loopback with the Bondline plugin
running on both sides against a real server; the samples the server stored
are written, as the plugin sent them, to bench/data/chromium_call_samples.json.gz.

    .venv/bin/python bench/record_samples.py [--seconds 40]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.real_samples import FIXTURE  # noqa: E402
from tests.support.browser_call import connect, launch, plugin_page  # noqa: E402
from tests.support.server import ServerProcess  # noqa: E402

ROLES = ("clinician", "client")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=40.0)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="bondline-record-"))
    srv = ServerProcess(db_url=str(tmp / "call.db"), log_path=tmp / "server.log").start()
    try:
        s = srv.create_session("C-REC")
        with sync_playwright() as pw:
            browser = launch(pw)
            pages = {role: plugin_page(browser, srv.base) for role in ROLES}
            for role, page in pages.items():
                page.evaluate("(o) => { Bondline.start(o); }",
                              {"server": srv.base, "token": s["tokens"][role], "intervalMs": 1000})
            connect(pages["clinician"], pages["client"])
            time.sleep(args.seconds)
            for page in pages.values():
                assert page.evaluate("() => Bondline.stop(5000)") is True
            browser.close()
    finally:
        srv.stop()
    con = sqlite3.connect(tmp / "call.db")
    rows = con.execute("SELECT p.role, s.data FROM sample s JOIN participant p ON p.id = s.participant_id "
                       "ORDER BY p.role, s.seq").fetchall()
    con.close()
    samples = [{"role": role, "sample": json.loads(data)} for role, data in rows]
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(FIXTURE, "wt") as f:
        json.dump(samples, f, separators=(",", ":"))
    sizes = sorted(len(data.encode()) for _, data in rows)
    print(f"recorded {len(samples)} samples to {FIXTURE}: median {sizes[len(sizes) // 2]} bytes, "
          f"range {sizes[0]}-{sizes[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
