"""Sidecar benchmark: N concurrent probe sessions against real server processes.

Starts ``--servers`` real ``bondline serve`` processes on one SQLite file,
creates N sessions through the API, and for each N runs N Python probe
agents (``plugin.probe_agent.ProbeAgent``, the code behind ``bondline
probe``) in separate agent processes, spread over the servers. After a
warm-up it measures, over a fixed window:
- CPU used by the server processes and by the agent processes (from
  /proc), and server CPU per probe-second;
- whether every probe held, in both directions, over the window: each
  probe's figures present for every interval on both sides (a missing
  sidecar or participant interval fails the step), no stamped frame lost
  or unreadable (and every frame of the whole run accounted for), no gap
  in the audio pilot, and ping RTT p99 under 50 ms.

By default the agents cost the server what a browser participant does:
the sidecar decodes their pilot (it cannot recognise a browser's Opus by
its bytes) and they send VP8 with inter frames, a key frame only at the
start (``--key-interval``), as Chromium does; default probe profile. Then
the same steps again with the sidecar recognising the agents' pre-encoded
pilot (the path only a Python agent built like the server can use) as a
second figure (``--no-recognition`` skips it).

    .venv/bin/python bench/sidecar.py [--steps 20,40,50,60,70] [--servers 2]

Servers and agents share this machine's cores, so the figures include
the agents' cost. The last lines are ``sidecar_max_probes: N`` (browser-
like) and ``sidecar_max_probes_recognised: N``.
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
from bench.common import CPU_REFERENCE, cpu_reference_ms  # noqa: E402
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
                  profile: dict[str, Any], decode: bool, key_interval: int) -> dict[str, Any]:
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
                           recognise_pilot=not decode, key_interval=key_interval)
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
                              tuple(spec["window"]), spec["profile"], spec["decode"],  # type: ignore[arg-type]
                              spec["key_interval"]))
    Path(spec["out"]).write_text(json.dumps(out))


# -- the bench -----------------------------------------------------------------


def start_servers(n: int, db: str, tmp: Path, decode: bool) -> list[ServerProcess]:
    env = {"BONDLINE_PROBE_MAX_PER_PROCESS": "1000", "BONDLINE_RATE_MESSAGES_PER_S": "100",
           "BONDLINE_PROBE_RECOGNISE_PILOT": "false" if decode else "true"}
    servers = []
    for i in range(n):  # one after the other: the first one migrates the database
        servers.append(ServerProcess(db_url=db, log_path=tmp / f"server-{i}.log", env=env).start(timeout=60))
    return servers


def make_tokens(server: ServerProcess, n: int, tag: str) -> dict[str, int]:
    """token -> session id, one session per probe."""
    tokens = {}
    for i in range(n):
        r = httpx.post(server.base + "/api/v1/sessions", headers=server.admin_headers, timeout=30,
                       json={"clinician": "bench@example.org", "client_code": f"B-{tag}-{i:04d}", "platform": "bench"})
        r.raise_for_status()
        tokens[next(p["token"] for p in r.json()["participants"] if p["role"] == "client")] = int(r.json()["id"])
    return tokens


def sidecar_intervals(server: ServerProcess, sessions: list[int],
                      window: tuple[float, float]) -> dict[int, list[dict[str, Any]]]:
    """Per session, the sidecar's own samples (what it received from that agent) in the window."""
    from media.probe.profile import PROBE_SEQ_BASE, STREAM_SIDECAR

    out: dict[int, list[dict[str, Any]]] = {}
    for sid in sessions:
        rows = httpx.get(f"{server.base}/api/v1/sessions/{sid}/samples", headers=server.admin_headers,
                         timeout=30).json()
        out[sid] = [r["data"] for r in rows
                    if r["source"] == "probe" and (r["seq"] - PROBE_SEQ_BASE) % 4 == STREAM_SIDECAR
                    and window[0] <= r["data"]["startMs"] / 1000
                    and (r["data"]["startMs"] + r["data"]["intervalMs"]) / 1000 <= window[1]]
    return out


def whole_seconds(window: tuple[float, float]) -> int:
    """Intervals (whole seconds) that lie entirely inside the window: what every probe must report."""
    return max(0, math.floor(window[1]) - math.ceil(window[0]))


def judge(agents: list[dict[str, Any]], side: dict[int, list[dict[str, Any]]], sessions: dict[str, int],
          expected: int) -> dict[str, Any]:
    errors = [a["error"] for a in agents if a.get("error")]
    # Every probe, both sides, every interval: a probe that reported nothing is a failure, not a blank.
    missing = sum(max(0, expected - len(a["intervals"])) for a in agents)
    missing += sum(max(0, expected - len(side.get(sessions.get(a.get("token", ""), -1), []))) for a in agents)
    missing += max(0, len(sessions) - len(agents)) * 2 * expected
    sidecar_samples = [x for rows in side.values() for x in rows]
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
            and expected > 0 and missing == 0)
    return {"held": held, "errors": errors[:3], "missingIntervals": missing, "expectedPerSide": expected,
            "framesLost": lost, "framesCorrupt": corrupt, "audioGapMs": gaps,
            "accounted": accounted, "rttP99Ms": round(p99, 1), "rttMedianMs": round(rtts[len(rtts) // 2], 1)
            if rtts else None, "intervals": windows, "sidecarIntervals": len(sidecar_samples)}


def run_step(n: int, servers: list[ServerProcess], sessions: dict[str, int], args: argparse.Namespace,
             tmp: Path, decode: bool) -> dict[str, Any]:
    tokens = list(sessions)
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
                                    "decode": decode, "key_interval": args.key_interval,
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
    side = sidecar_intervals(servers[0], list(sessions.values()), window)
    server_cores = (sum(s1) - sum(s0)) / span
    agent_cores = (sum(a1) - sum(a0)) / span
    # Whatever else ran on the machine meanwhile (other people's work, this script).
    other_cores = max(0.0, (b1 - b0) / span - server_cores - agent_cores)
    out = {"n": n, "serverCores": round(server_cores, 3), "agentCores": round(agent_cores, 3),
           "otherCores": round(other_cores, 3),
           "serverMsPerProbeS": round(server_cores * 1000 / n, 2), "agentProcesses": len(groups)}
    out.update(judge(agents, side, sessions, whole_seconds(window)))
    return out


def run_config(args: argparse.Namespace, steps: list[int], decode: bool, label: str) -> int:
    """Every step with one sidecar configuration; the largest N that held."""
    best = 0
    with tempfile.TemporaryDirectory(prefix="bondline-bench-") as d:
        tmp = Path(d)
        servers = start_servers(args.servers, str(tmp / "bench.db"), tmp, decode)
        try:
            sessions = make_tokens(servers[0], max(steps), "D" if decode else "R")
            for n in steps:
                r = run_step(n, servers, dict(list(sessions.items())[:n]), args, tmp, decode)
                print(f"[{label}] N={n:3d}  server {r['serverCores']:.2f} cores = {r['serverMsPerProbeS']:.1f} ms "
                      f"server CPU per probe-second  agents {r['agentCores']:.2f} cores  total "
                      f"{r['serverCores'] + r['agentCores']:.2f}  (others {r['otherCores']:.2f})  |"
                      f"  intervals missing {r['missingIntervals']} of {2 * n * r['expectedPerSide']}"
                      f"  frames lost {r['framesLost']} unreadable {r['framesCorrupt']} accounted "
                      f"{'yes' if r['accounted'] else 'NO'}  audio gaps {r['audioGapMs']:.0f} ms  rtt p50 "
                      f"{r['rttMedianMs']} p99 {r['rttP99Ms']} ms  ->  "
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
    return best


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
    ap.add_argument("--key-interval", type=int, default=3000,
                    help="frames between the agents' key frames (default 3000, Chromium's: inter frames "
                    "after the first; 1 sends every frame as a key frame, as a Python agent does)")
    ap.add_argument("--keep-going", action="store_true", help="run every step even after accuracy failed")
    ap.add_argument("--no-recognition", action="store_true",
                    help="skip the second figure (the sidecar recognising the agents' pilot by its bytes)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker_main(args)
        return
    steps = [int(x) for x in args.steps.split(",")]
    print(f"# load average before start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs); "
          f"profile: video {args.fps:g} fps (key frame every {args.key_interval}), audio {args.ptime} ms packets, "
          f"pings {args.ping_hz:g}/s; {args.servers} server process(es)", flush=True)
    # Capacity scales with the machine's speed: figures from two machines compare only with this beside them.
    print(f"# cpu reference: {cpu_reference_ms():.1f} ms for {CPU_REFERENCE} (best of 5)", flush=True)
    best = run_config(args, steps, decode=True, label="browser-like: pilot decoded")
    recognised = None if args.no_recognition else run_config(args, steps, decode=False,
                                                              label="pilot recognised")
    print(f"sidecar_max_probes: {best}")
    if recognised is not None:
        print(f"sidecar_max_probes_recognised: {recognised}")


if __name__ == "__main__":
    main()
