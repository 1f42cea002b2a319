"""Sidecar benchmark: N concurrent probe sessions against real server processes.

Starts ``--servers`` real ``bondline serve`` processes on one SQLite file,
creates N sessions through the API, and for each N runs N Python probe
agents (``plugin.probe_agent.ProbeAgent``, the code behind ``bondline
probe``) in separate agent processes, spread over the servers. After a
warm-up it measures, over a fixed window:
- CPU used by the server processes and by the agent processes (from
  /proc), and server CPU per probe;
- whether accuracy held, in both directions, over the window: no stamped
  frame lost or unreadable (and every frame of the whole run accounted
  for), no gap in the audio pilot, and ping RTT p99 under 50 ms.

    .venv/bin/python bench/sidecar.py [--steps 20,40,50,60,70] [--servers 2] [--decode-pilot]

Servers and agents share this machine's cores, so the figures include
the agents' cost. The last line is ``sidecar_max_probes: N``: the largest
N at which accuracy held.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.support.server import ServerProcess  # noqa: E402

RTT_P99_LIMIT_MS = 50.0
TICK = os.sysconf("SC_CLK_TCK")


def system_busy_seconds() -> float:
    """CPU seconds all cores spent busy (not idle or waiting), from /proc/stat."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / TICK


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its waited-for children), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / TICK


# -- the agent worker (a separate process) -----------------------------------


async def _worker(servers: list[str], tokens: list[str], offset: int, duration: float, window: tuple[float, float],
                  profile: dict[str, Any], decode: bool) -> dict[str, Any]:
    from media.probe.profile import ProbeProfile
    from media.probe.report import IntervalData
    from plugin.probe_agent import ProbeAgent

    prof = ProbeProfile(**profile)
    results: list[dict[str, Any]] = []

    async def one(i: int, token: str) -> None:
        rtts: list[float] = []
        intervals: list[dict[str, Any]] = []

        def on_interval(d: IntervalData, sample: dict[str, Any]) -> None:
            if window[0] <= d.start_ms / 1000 and (d.start_ms + d.interval_ms) / 1000 <= window[1]:
                rtts.extend(d.pings.rtt_ms)
                intervals.append(sample)

        agent = ProbeAgent(servers[(offset + i) % len(servers)], token, prof, on_interval=on_interval,
                           recognise_pilot=not decode)
        await asyncio.sleep(0.05 * i)  # a ramp, as participants do not all join in the same millisecond
        try:
            res = await agent.run(duration, reconnect=False)
            last = res.last
            results.append({"token": token, "participant": last.participant if last else None,
                            "sidecar": last.sidecar if last else None, "error": last.error if last else "no run",
                            "rtts": rtts, "intervals": intervals, "samples": res.samples,
                            "undelivered": res.uplink_outstanding})
        except Exception as e:  # noqa: BLE001 - reported, not fatal for the other agents
            results.append({"token": token, "error": f"{type(e).__name__}: {e}", "rtts": rtts, "intervals": []})

    await asyncio.gather(*(one(i, t) for i, t in enumerate(tokens)))
    return {"agents": results}


def worker_main(args: argparse.Namespace) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    spec = json.loads(Path(args.worker).read_text())
    out = asyncio.run(_worker(spec["servers"], spec["tokens"], spec["offset"], spec["duration"],
                              tuple(spec["window"]), spec["profile"], spec["decode"]))  # type: ignore[arg-type]
    Path(spec["out"]).write_text(json.dumps(out))


# -- the bench -----------------------------------------------------------------


def start_servers(n: int, db: str, tmp: Path, decode: bool) -> list[ServerProcess]:
    env = {"BONDLINE_PROBE_MAX_PER_PROCESS": "1000", "BONDLINE_RATE_MESSAGES_PER_S": "100",
           "BONDLINE_PROBE_RECOGNISE_PILOT": "false" if decode else "true"}
    servers = []
    for i in range(n):  # one after the other: the first one migrates the database
        servers.append(ServerProcess(db_url=db, log_path=tmp / f"server-{i}.log", env=env).start(timeout=60))
    return servers


def make_tokens(server: ServerProcess, n: int) -> list[str]:
    tokens = []
    for i in range(n):
        r = httpx.post(server.base + "/api/v1/sessions", headers=server.admin_headers, timeout=30,
                       json={"clinician": "bench@example.org", "client_code": f"B-{i:04d}", "platform": "bench"})
        r.raise_for_status()
        tokens.append(next(p["token"] for p in r.json()["participants"] if p["role"] == "client"))
    return tokens


def sidecar_intervals(server: ServerProcess, window: tuple[float, float]) -> list[dict[str, Any]]:
    """The sidecar's own samples (what it received from the agents) in the window."""
    from media.probe.profile import PROBE_SEQ_BASE, STREAM_SIDECAR

    out = []
    sessions = httpx.get(server.base + "/api/v1/sessions", headers=server.admin_headers, timeout=30,
                         params={"limit": 1000}).json()
    for s in sessions:
        rows = httpx.get(f"{server.base}/api/v1/sessions/{s['id']}/samples", headers=server.admin_headers,
                         timeout=30).json()
        for r in rows:
            d = r["data"]
            if r["source"] == "probe" and (r["seq"] - PROBE_SEQ_BASE) % 4 == STREAM_SIDECAR and \
                    window[0] <= d["startMs"] / 1000 and (d["startMs"] + d["intervalMs"]) / 1000 <= window[1]:
                out.append(d)
    return out


def judge(agents: list[dict[str, Any]], sidecar_samples: list[dict[str, Any]]) -> dict[str, Any]:
    errors = [a["error"] for a in agents if a.get("error")]
    lost = corrupt = gaps = 0
    accounted = True
    for sample in [s for a in agents for s in a["intervals"]] + sidecar_samples:
        for st in sample["streams"]:
            if st["kind"] == "video":
                lost += st.get("framesLost", 0)
                corrupt += st.get("framesCorrupt", 0)
            else:
                gaps += st.get("audioGapMs", 0)
    for a in agents:
        for side in ("participant", "sidecar"):
            v = (a.get(side) or {}).get("video") or {}
            accounted &= bool(v.get("accounted")) and v.get("lost") == 0
    rtts = sorted(r for a in agents for r in a["rtts"])
    p99 = rtts[min(len(rtts) - 1, int(0.99 * len(rtts)))] if rtts else math.inf
    windows = sum(len(a["intervals"]) for a in agents)
    held = (not errors and accounted and lost == 0 and corrupt == 0 and gaps == 0 and p99 < RTT_P99_LIMIT_MS
            and windows > 0 and len(sidecar_samples) > 0)
    return {"held": held, "errors": errors[:3], "framesLost": lost, "framesCorrupt": corrupt, "audioGapMs": gaps,
            "accounted": accounted, "rttP99Ms": round(p99, 1), "rttMedianMs": round(rtts[len(rtts) // 2], 1)
            if rtts else None, "intervals": windows, "sidecarIntervals": len(sidecar_samples)}


def run_step(n: int, servers: list[ServerProcess], tokens: list[str], args: argparse.Namespace,
             tmp: Path) -> dict[str, Any]:
    per = args.agents_per_process
    groups = [tokens[i:i + per] for i in range(0, n, per)]
    t0 = time.time()
    ramp = 0.05 * per + 3.0
    window = (t0 + ramp + args.warmup, t0 + ramp + args.warmup + args.measure)
    duration = ramp + args.warmup + args.measure + 2.0
    profile = {"fps": args.fps, "ptime_ms": args.ptime, "ping_hz": args.ping_hz}
    procs = []
    for g, group in enumerate(groups):
        spec = tmp / f"worker-{n}-{g}.json"
        spec.write_text(json.dumps({"servers": [s.base for s in servers], "tokens": group, "offset": g,
                                    "duration": duration, "window": window, "profile": profile,
                                    "decode": args.decode_pilot,
                                    "out": str(tmp / f"result-{n}-{g}.json")}))
        procs.append(subprocess.Popen([sys.executable, __file__, "--worker", str(spec)], cwd=ROOT))
    time.sleep(max(0.0, window[0] - time.time()))
    s0 = [cpu_seconds(s.proc.pid) for s in servers if s.proc]
    a0 = [cpu_seconds(p.pid) for p in procs]
    b0 = system_busy_seconds()
    time.sleep(max(0.0, window[1] - time.time()))
    s1 = [cpu_seconds(s.proc.pid) for s in servers if s.proc]
    a1 = [cpu_seconds(p.pid) for p in procs]
    b1 = system_busy_seconds()
    span = window[1] - window[0]
    for p in procs:
        p.wait(timeout=duration + 120)
    agents = []
    for g in range(len(groups)):
        path = tmp / f"result-{n}-{g}.json"
        agents.extend(json.loads(path.read_text())["agents"] if path.exists() else [{"error": "worker died",
                                                                                      "rtts": [], "intervals": []}])
    side = [x for s in servers[:1] for x in sidecar_intervals(s, window)]
    server_cores = (sum(s1) - sum(s0)) / span
    agent_cores = (sum(a1) - sum(a0)) / span
    # Whatever else ran on the machine meanwhile (other people's work, this script).
    other_cores = max(0.0, (b1 - b0) / span - server_cores - agent_cores)
    out = {"n": n, "serverCores": round(server_cores, 3), "agentCores": round(agent_cores, 3),
           "otherCores": round(other_cores, 3),
           "serverMsPerProbeS": round(server_cores * 1000 / n, 2), "agentProcesses": len(groups)}
    out.update(judge(agents, side))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", default="20,40,50,60,70", help="comma list of N (concurrent probes)")
    ap.add_argument("--servers", type=int, default=2, help="server processes (default 2: one per core)")
    ap.add_argument("--agents-per-process", type=int, default=10)
    ap.add_argument("--warmup", type=float, default=6.0, help="seconds after the ramp before measuring")
    ap.add_argument("--measure", type=float, default=20.0, help="seconds measured per step")
    ap.add_argument("--fps", type=float, default=5.0)
    ap.add_argument("--ptime", type=int, default=60)
    ap.add_argument("--ping-hz", type=float, default=5.0)
    ap.add_argument("--keep-going", action="store_true", help="run every step even after accuracy failed")
    ap.add_argument("--decode-pilot", action="store_true",
                    help="decode every audio packet on both ends (as the sidecar does for browsers) instead of "
                    "recognising the agents' pre-encoded pilot packets")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker_main(args)
        return
    steps = [int(x) for x in args.steps.split(",")]
    print(f"# load average before start: {os.getloadavg()[0]:.2f} (2 cores: {os.cpu_count()} CPUs); "
          f"profile: video {args.fps:g} fps, audio {args.ptime} ms packets, pings {args.ping_hz:g}/s; "
          f"{args.servers} server process(es); pilot {'decoded' if args.decode_pilot else 'recognised'}", flush=True)
    best = 0
    with tempfile.TemporaryDirectory(prefix="bondline-bench-") as d:
        tmp = Path(d)
        servers = start_servers(args.servers, str(tmp / "bench.db"), tmp, args.decode_pilot)
        try:
            tokens = make_tokens(servers[0], max(steps))
            for n in steps:
                r = run_step(n, servers, tokens[:n], args, tmp)
                print(f"N={n:3d}  server {r['serverCores']:.2f} cores ({r['serverMsPerProbeS']:.1f} ms CPU/s per "
                      f"probe)  agents {r['agentCores']:.2f} cores  total {r['serverCores'] + r['agentCores']:.2f}"
                      f"  (others {r['otherCores']:.2f})  |"
                      f"  frames lost {r['framesLost']} unreadable {r['framesCorrupt']} accounted "
                      f"{'yes' if r['accounted'] else 'NO'}  audio gaps {r['audioGapMs']:.0f} ms  rtt p50 "
                      f"{r['rttMedianMs']} p99 {r['rttP99Ms']} ms  ->  accuracy "
                      f"{'held' if r['held'] else 'NOT held'}" + (f"  errors: {r['errors']}" if r["errors"] else ""),
                      flush=True)
                print("# " + json.dumps(r), flush=True)
                if r["held"]:
                    best = max(best, n)
                elif not args.keep_going:
                    break
                time.sleep(3)  # let the last step's runs end on the servers
        finally:
            for s in servers:
                s.stop()
    print(f"sidecar_max_probes: {best}")


if __name__ == "__main__":
    main()
