"""The participant-side commands: ``bondline probe`` and ``bondline analyze-recording``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
from datetime import datetime
from typing import Any

import orjson

from media.probe.profile import ProbeProfile


def _line(data: Any, sample: dict[str, Any]) -> str:
    """The live one-line summary of an interval (what this side received)."""
    conn = sample.get("connection", {})
    parts = [datetime.fromtimestamp(sample["startMs"] / 1000).strftime("%H:%M:%S")]
    rtt = conn.get("rttMs")
    parts.append(f"rtt {rtt:6.1f} ms" if isinstance(rtt, int | float) else "rtt     -- ")
    probe = sample.get("probe", {})
    parts.append(f"pings lost {probe.get('pingsLost', 0)}/{probe.get('pingsLost', 0) + probe.get('pingsReceived', 0)}")
    for s in sample.get("streams", []):
        if s["kind"] == "video":
            parts.append(f"video {s.get('framesPerSecond', 0):4.1f} fps lost {s.get('framesLost', 0)} "
                         f"late {s.get('framesLate', 0)} freezes {s.get('freezeCount', 0)}")
        else:
            parts.append(f"audio gap {s.get('audioGapMs', 0):5.0f} ms")
    return " | ".join(parts)


def _report(result: Any) -> str:
    run = result.last
    if run is None:
        return "no probe run completed"
    lines = [f"probe run {run.run}: {len(result.runs)} connection(s), {result.samples} samples sent"]
    for label, side in (("received here (server -> you)", run.participant), ("received by the server (you -> server)",
                                                                             run.sidecar or {})):
        v, a, p = side.get("video") or {}, side.get("audio") or {}, side.get("pings") or {}
        lines.append(f"  {label}:")
        if v:
            lines.append(f"    video: {v.get('received')} of {v.get('sent')} frames, lost {v.get('lost')}, late "
                         f"{v.get('late')}, freezes {v.get('freezes')} ({v.get('freezeMs')} ms), "
                         f"all accounted for: {v.get('accounted')}")
        if a:
            lines.append(f"    audio: {a.get('heard')} of {a.get('blocks')} blocks heard, gaps {a.get('gapMs')} ms")
        if p:
            lines.append(f"    pings: {p.get('received')} received, lost {p.get('lost')}, rtt median "
                         f"{p.get('rttMedianMs')} ms, p99 {p.get('rttP99Ms')} ms")
    if run.verdict:
        lines.append(f"  verdict: {run.verdict.get('words')}")
        lines.extend(f"    - {tip}" for tip in run.verdict.get("tips", []))
    if result.uplink_outstanding:
        lines.append(f"  warning: {result.uplink_outstanding} samples/events could not be delivered")
    return "\n".join(lines)


def cmd_probe(args: argparse.Namespace) -> int:
    # imported when the command runs: `bondline --help` and other commands stay fast
    import asyncio

    from plugin.probe_agent import ProbeAgent, ProbeFailed

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    profile = ProbeProfile(video=not args.no_video, audio=not args.no_audio, fps=args.fps, ptime_ms=args.ptime,
                           ping_hz=args.ping_hz, interval_ms=int(args.interval * 1000))
    problems = profile.problems()
    if problems:
        print("bondline probe: " + "; ".join(problems), file=sys.stderr)
        return 2

    def live(data: Any, sample: dict[str, Any]) -> None:
        if not args.quiet:
            print(_line(data, sample), flush=True)

    agent = ProbeAgent(args.server, args.token, profile, on_interval=live)

    async def main() -> Any:
        # Ctrl-C ends the probe cleanly: both sides' totals, then the report.
        with contextlib.suppress(NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, agent.stop)
        return await agent.run(args.duration)

    try:
        result = asyncio.run(main())
    except ProbeFailed as e:
        print(f"bondline probe: the server refused the probe: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130
    if args.json:
        last = result.last
        print(orjson.dumps({"participant": last.participant if last else None,
                            "sidecar": last.sidecar if last else None,
                            "verdict": last.verdict if last else None,
                            "runs": len(result.runs), "samples": result.samples}).decode())
    else:
        print(_report(result))
    last = result.last
    return 0 if last is not None and last.error is None else 1


def cmd_analyze_recording(args: argparse.Namespace) -> int:
    import asyncio

    from media.recording import analyze

    try:
        report = analyze(args.file, min_dropout_ms=args.min_dropout_ms)
    except (FileNotFoundError, IsADirectoryError) as e:
        print(f"bondline analyze-recording: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - PyAV raises many kinds for a file it cannot read
        print(f"bondline analyze-recording: cannot read {args.file}: {e}", file=sys.stderr)
        return 2
    if args.server or args.token:
        if not (args.server and args.token and args.start):
            print("bondline analyze-recording: storing needs --server, --token and --start", file=sys.stderr)
            return 2
        start = datetime.fromisoformat(args.start.replace("Z", "+00:00"))
        events = report.events(int(start.timestamp() * 1000))
        stored = asyncio.run(_send_events(args.server, args.token, events))
        if not stored:
            print("bondline analyze-recording: the events could not be delivered", file=sys.stderr)
            return 1
    if args.json:
        print(orjson.dumps(report.to_dict()).decode())
        return 0
    d = report.to_dict()
    print(f"{args.file}: video {report.video_duration_s:.1f} s ({report.video_frames} frames), "
          f"audio {report.audio_duration_s:.1f} s")
    print(f"  freezes: {d['freezeCount']} ({d['freezeMs']} ms); audio dropouts: {d['dropoutCount']} "
          f"({d['dropoutMs']} ms)")
    for ep in report.episodes:
        print(f"  {ep.kind:13s} {ep.start_s:8.2f} s - {ep.end_s:8.2f} s  ({ep.duration_ms:7.0f} ms, {ep.cause})")
    return 0


async def _send_events(server: str, token: str, events: list[dict[str, Any]]) -> bool:
    from plugin.uplink import Uplink

    uplink = Uplink(server, token)
    await uplink.start()
    for ev in events:
        uplink.submit_event(ev)
    return await uplink.close(timeout=15) and uplink.failed is None


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = ProbeProfile()
    probe = sub.add_parser(
        "probe", help="probe this machine's path to a Bondline server",
        description="Run the participant side of a probe against the server's sidecar: stamped video, a pilot "
        "tone and pings both ways, measured from content. Prints a line per interval and a final report of both "
        "directions; samples are stored on the server for the participant of TOKEN (docs/probe.md).")
    probe.add_argument("--server", required=True, help="the Bondline server, e.g. https://bondline.example")
    probe.add_argument("--token", required=True, help="the participant's token (blp_...) or a check link token")
    probe.add_argument("--duration", type=float, default=None, metavar="S",
                       help="seconds to run (default: until interrupted; a check link runs its own length)")
    probe.add_argument("--fps", type=float, default=d.fps, help=f"video frames per second (default {d.fps:g})")
    probe.add_argument("--ptime", type=int, default=d.ptime_ms, help=f"audio packet ms (default {d.ptime_ms})")
    probe.add_argument("--ping-hz", type=float, default=d.ping_hz, help=f"pings per second (default {d.ping_hz:g})")
    probe.add_argument("--interval", type=float, default=d.interval_ms / 1000, metavar="S",
                       help="seconds per sample (whole seconds; default 1)")
    probe.add_argument("--no-video", action="store_true", help="probe without video")
    probe.add_argument("--no-audio", action="store_true", help="probe without audio")
    probe.add_argument("--quiet", action="store_true", help="no live lines, only the final report")
    probe.add_argument("--json", action="store_true", help="print the final report as JSON")
    probe.set_defaults(handler=cmd_probe)

    rec = sub.add_parser(
        "analyze-recording", help="find freezes and audio dropouts in a recorded session file",
        description="Decode a recording with PyAV and list video freezes (repeated or missing frames, by the "
        "W3C freeze rule) and audio dropouts (digital silence or gaps in timestamps). With --server/--token/"
        "--start the episodes are stored as probe events of that participant (docs/probe.md).")
    rec.add_argument("file", help="the recording (any container and codecs FFmpeg reads)")
    rec.add_argument("--json", action="store_true", help="print the result as JSON")
    rec.add_argument("--min-dropout-ms", type=float, default=100.0, help="shortest silence reported (default 100)")
    rec.add_argument("--server", help="store the episodes on this Bondline server")
    rec.add_argument("--token", help="the participant token to store them for")
    rec.add_argument("--start", help="wall-clock time the recording began (ISO 8601)")
    rec.set_defaults(handler=cmd_analyze_recording)
