"""Capture the importer's corpus: real Chromium dumps of an impaired call, with the relay's truth.

    python -m tests.support.dump_capture tests/data/dumps [--seed N]

Two headless Chromium browsers (two processes, one per participant, as in a
real session) call each other with ``iceTransportPolicy: 'relay'`` through
coturn (tests/support/turn.py) behind the impairment relay
(tests/support/udp_impair.py), which counts every RTP packet it forwards and
drops per (crossing, SSRC). The client's browser has chrome://webrtc-internals
open before the call; the clinician's opens it mid-call. The call goes
through phases drawn from the seed: clean, random RTP loss on the
TURN -> client crossing, extra delay on that crossing, a network outage both
ways, clean again. At the end each browser saves its dumps with the page's
own buttons: the webrtc-internals dump compressed (.gz) and not (.txt), and
the rtcstats dump.

``truth.json`` beside them holds the seed, the phase marks (epoch ms), the
impairments drawn, the delay the relay measured applying, and the relay's
per-(crossing, SSRC) forwarded/dropped counts sampled every 100 ms.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.support.browser_call import CHROMIUM_ARGS, connect, turn_config
from tests.support.turn import TurnServer
from tests.support.udp_impair import UdpImpair

INTERNALS = "chrome://webrtc-internals"


class _Blank(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        body = b"<!doctype html><title>call</title><body></body>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _launch(pw: Playwright, downloads: Path) -> Browser:
    return pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS,
                              downloads_path=str(downloads))


def _open_internals(browser: Browser) -> Page:
    page = browser.new_page()
    page.goto(INTERNALS)
    page.wait_for_selector("details")
    return page


def _save_dumps(page: Page, out: Path, prefix: str) -> list[str]:
    """Click the page's own download buttons; returns the files written."""
    # The buttons sit in a closed <details>: open it by its <summary>, as a person would.
    page.locator("summary", has_text="WebRTC-Internals dump").click()
    saved = []
    check = page.locator("#dump-checkbox")
    for compressed in (True, False):
        if check.is_checked() != compressed:
            check.click()
        with page.expect_download() as d:
            page.locator("#dump-click-target").click()
        name = f"{prefix}_{d.value.suggested_filename}"
        d.value.save_as(out / name)
        saved.append(name)
    with page.expect_download() as d:
        page.locator("#dump-click-target-rtcstats").click()
    name = f"{prefix}_{d.value.suggested_filename}"
    d.value.save_as(out / name)
    saved.append(name)
    return saved


def capture(out: Path, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    plan = {
        "loss": round(rng.uniform(0.02, 0.08), 3),
        "loss_s": round(rng.uniform(6, 9), 1),
        "delay_ms": round(rng.uniform(25, 75)),
        "delay_s": round(rng.uniform(9, 11), 1),
        "outage_s": round(rng.uniform(2.0, 4.0), 2),
    }
    print(f"dump capture: seed {seed} (replay with --seed {seed}); plan {plan}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bondline-dumps-"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Blank)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{httpd.server_address[1]}/call"
    turn = TurnServer(work / "turn").start()
    relay = UdpImpair(turn.port, seed=seed).start()
    marks: dict[str, float] = {}
    counts: list[dict[str, Any]] = []
    stop = threading.Event()

    def sample_counts() -> None:
        while not stop.is_set():
            t = time.time() * 1000
            snap = relay.snapshot()
            counts.append({"t": round(t, 1), "rtp": {f"{d}:{ssrc}": list(v) for (d, ssrc), v in snap.items()}})
            stop.wait(0.1)

    sampler = threading.Thread(target=sample_counts, daemon=True)
    saved: list[str] = []
    try:
        with sync_playwright() as pw:
            browsers = {role: _launch(pw, work / role) for role in ("clinician", "client")}
            internals = {"client": _open_internals(browsers["client"])}  # open before the call
            pages = {role: b.new_page() for role, b in browsers.items()}
            for p in pages.values():
                p.goto(origin)
            sampler.start()
            marks["call_start"] = time.time() * 1000
            connect(pages["clinician"], pages["client"], turn_config(relay.port, turn.user, turn.password))
            marks["connected"] = time.time() * 1000
            time.sleep(4)
            internals["clinician"] = _open_internals(browsers["clinician"])  # mid-call
            marks["clinician_internals_open"] = time.time() * 1000
            time.sleep(5)
            marks["loss"] = relay.set("down", loss=plan["loss"], rtp_only=True)
            time.sleep(plan["loss_s"])
            marks["loss_end"] = relay.set("down", loss=0.0)
            time.sleep(2)
            marks["delay"] = relay.set("down", delay_ms=plan["delay_ms"])
            time.sleep(plan["delay_s"])
            applied = relay.measured_delay_ms("down")
            marks["delay_end"] = relay.set("down", delay_ms=0)
            time.sleep(2)
            marks["outage"] = relay.set_outage(True)
            time.sleep(plan["outage_s"])
            marks["outage_end"] = relay.set_outage(False)
            time.sleep(8)  # video resumes on a key frame; the freeze is counted then
            marks["saving"] = time.time() * 1000
            for role, page in internals.items():
                saved += _save_dumps(page, out, role)
            marks["saved"] = time.time() * 1000
            for b in browsers.values():
                b.close()
    finally:
        stop.set()
        if sampler.is_alive():
            sampler.join(2)
        relay.stop()
        turn.stop()
        httpd.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    truth = {
        "seed": seed,
        "plan": plan,
        "marks": {k: round(v, 1) for k, v in marks.items()},
        "measured_delay_ms": None if applied is None else round(applied, 2),
        "relay_log": [[round(t, 1), what] for t, what in relay.log],
        "files": saved,
        "rtp_counts": counts,
        "note": "rtp_counts: per 'crossing:ssrc' [forwarded, dropped] RTP packets since the call began, "
                "sampled every 100 ms; 'down' is TURN -> receiving browser, the crossing impaired.",
    }
    (out / "truth.json").write_text(json.dumps(truth, separators=(",", ":")) + "\n")
    return truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=int(os.environ.get("BONDLINE_DUMP_SEED", "0")) or None)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
    truth = capture(args.out, seed)
    print(json.dumps({k: truth[k] for k in ("seed", "plan", "marks", "measured_delay_ms", "files")}, indent=1))


if __name__ == "__main__":
    main()
