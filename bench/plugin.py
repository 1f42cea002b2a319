"""Cost of the browser plugin in a real call (docs/performance.md, "Browser plugin").

Two headless Chromium pages call each other (fake camera and microphone,
320x240 VP8 + Opus); each runs the plugin with its own participant token,
streaming to a real ``bondline serve`` through a counting TCP proxy. Prints:

1. the plugin's own time per minute, per participant, as it measures itself:
   wall time from each ``getStats()`` call to its answer (an upper bound on
   getStats' CPU: it includes waiting for WebRTC's threads), and main-thread
   time in the plugin's JavaScript (deltas, badge, JSON encoding, send);
2. bytes per sample: the sample's JSON, the WebSocket message per sample
   (batch envelope and events included), and on the wire (WebSocket frames
   after permessage-deflate, TCP payload, per sample);
3. the whole browser's CPU time for the same call without and with the
   plugin (an A/B of noisy numbers on a shared machine: indicative only).

    .venv/bin/python bench/plugin.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from playwright.sync_api import Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.browser_call import connect, launch, plugin_page  # noqa: E402
from tests.support.server import ServerProcess  # noqa: E402
from tests.support.tcp_gate import TcpGate  # noqa: E402

ROLES = ("clinician", "client")


def browser_cpu_s() -> float:
    """User + system CPU seconds of every Chromium process started under this one."""
    total = 0.0
    for p in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if "chrom" in p.name():
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            pass
    return total


def run_call(pages: dict[str, Page], seconds: float) -> float:
    connect(pages["clinician"], pages["client"])
    time.sleep(3)  # encoders ramp up; not measured
    c0, t0 = browser_cpu_s(), time.monotonic()
    time.sleep(seconds)
    used = browser_cpu_s() - c0
    wall = time.monotonic() - t0
    for p in pages.values():
        p.evaluate("() => { window.pc.close(); }")
    return used / wall * 60


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="measured call length per phase (default 60)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bondline-bench-plugin-"))
    srv = ServerProcess(db_url=str(tmp / "bench.db"), log_path=tmp / "server.log").start()
    gate = TcpGate(srv.port).start()
    out: dict[str, list[float]] = {}
    statuses: dict[str, list[dict[str, Any]]] = {}
    wire_up = 0
    try:
        r = httpx.post(srv.base + "/api/v1/sessions", headers=srv.admin_headers,
                       json={"clinician": "bench@example.org", "client_code": "BENCH", "platform": "bench"})
        r.raise_for_status()
        tokens = {p["role"]: p["token"] for p in r.json()["participants"]}
        with sync_playwright() as pw:
            browser = launch(pw)
            pages = {role: plugin_page(browser, gate.base) for role in ROLES}
            # Alternate the phases so drift in the machine's load hits both alike.
            for phase in ("without", "with", "without", "with"):
                if phase == "with":
                    for role, page in pages.items():
                        page.evaluate("(o) => { Bondline.start(o); }",
                                      {"server": gate.base, "token": tokens[role], "intervalMs": 1000})
                    up0 = gate.ws_bytes_up
                cpu = run_call(pages, args.seconds / 2)
                out.setdefault("cpu_" + phase, []).append(cpu)
                if phase == "with":
                    for role, page in pages.items():
                        st = page.evaluate("() => Bondline.status()")
                        statuses.setdefault(role, []).append(st)
                        page.evaluate("() => Bondline.stop(3000)")
                    wire_up += gate.ws_bytes_up - up0
            browser.close()
    finally:
        gate.stop()
        srv.stop()

    all_st = [st for sts in statuses.values() for st in sts]
    samples = sum(st["cost"]["samples"] for st in all_st)
    minutes = sum(st["cost"]["ticks"] for st in all_st) / len(ROLES) / 60  # one tick a second each
    get_stats = sum(st["cost"]["getStatsMs"] for st in all_st) / len(ROLES) / minutes
    work = sum(st["cost"]["workMs"] for st in all_st) / len(ROLES) / minutes
    without = sum(out["cpu_without"]) / len(out["cpu_without"])
    with_ = sum(out["cpu_with"]) / len(out["cpu_with"])
    print(f"call: 2 participants, {args.seconds:.0f} s measured with and {args.seconds:.0f} s without the plugin "
          f"(alternating halves), 1 s interval, {samples} samples; machine: {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"plugin_getstats_ms_per_min: {get_stats:.1f}   (wall time until getStats() answers, per participant)")
    print(f"plugin_js_ms_per_min: {work:.1f}   (deltas, badge, JSON encoding, send; per participant)")
    print(f"plugin_core_share_percent: {(get_stats + work) / 60_000 * 100:.3f}   (both together, of one core)")
    print(f"bytes_per_sample_json: {sum(st['cost']['sampleBytes'] for st in all_st) / samples:.0f}")
    print(f"bytes_per_sample_ws_message: {sum(st['bytesSent'] for st in all_st) / samples:.0f}"
          "   (batch envelope and events included, before compression)")
    print(f"bytes_per_sample_wire: {wire_up / samples:.0f}   (WebSocket frames after permessage-deflate)")
    print(f"browser_cpu_s_per_min_without_plugin: {without:.2f}   (halves: "
          + ", ".join(f"{x:.2f}" for x in out["cpu_without"]) + ")")
    print(f"browser_cpu_s_per_min_with_plugin: {with_:.2f}   (halves: "
          + ", ".join(f"{x:.2f}" for x in out["cpu_with"]) + f"; difference {with_ - without:+.2f} s/min "
          f"for both participants = {(with_ - without) / 2 / 60 * 100:+.2f} % of a core each; noisy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
