"""CPU of probe ends in one process: N participant/sidecar pairs over loopback.

Prints CPU per end-second for one configuration, and with ``--profile`` a
cProfile of the run (where the decode path's time goes):

    .venv/bin/python bench/probe_pairs.py [--pairs 10] [--seconds 15] [--recognise] [--key-interval 3000]
                                          [--profile]

Default: browser-like (the pilot decoded at both ends, the participant
sending VP8 inter frames after one key frame). Both ends share the process,
so the figure is the mean of a participant end and a sidecar end.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from media.pilot_opus import encode_cycle  # noqa: E402
from media.probe.endpoint import ProbeEndpoint  # noqa: E402
from media.probe.profile import ProbeProfile  # noqa: E402


async def run(args: argparse.Namespace) -> None:
    prof = ProbeProfile()
    encode_cycle(prof.ptime_ms)
    pairs = []
    for _ in range(args.pairs):
        a = ProbeEndpoint(prof, "participant", recognise_pilot=args.recognise, key_interval=args.key_interval)
        b = ProbeEndpoint(prof, "sidecar", recognise_pilot=args.recognise)
        await a.accept_answer(await b.make_answer(await a.make_offer()))
        pairs.append((a, b))
    for a, b in pairs:
        if not (await a.wait_connected(30) and await b.wait_connected(30)):
            raise SystemExit("a pair did not connect")
        a.start(lambda d: None)
        b.start(lambda d: None)
    await asyncio.sleep(2.0)  # alignment and warm-up
    profiler = cProfile.Profile() if args.profile else None
    t0 = time.process_time()
    if profiler:
        profiler.enable()
    await asyncio.sleep(args.seconds)
    if profiler:
        profiler.disable()
    cpu = time.process_time() - t0
    a, b = pairs[0]
    video = b.summary({"frames": a.video_track.sent if a.video_track else 0}).get("video", {})
    for a, b in pairs:
        await a.close()
        await b.close()
    import os

    print(f"# load average {os.getloadavg()[0]:.2f}; pilot {'recognised' if args.recognise else 'decoded'}, "
          f"key frame every {args.key_interval}; first pair's sidecar video: {video}")
    print(f"{args.pairs} pairs, {args.seconds:g} s: {cpu:.2f} CPU s = "
          f"{cpu / args.seconds / (2 * args.pairs) * 1000:.1f} ms CPU per end-second"
          + (" (under cProfile)" if profiler else ""))
    if profiler:
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(20)
        stats.sort_stats("cumulative").print_stats("receiver|audio_meter|video_meter|video_codec|barcode|pilot", 20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--recognise", action="store_true", help="recognise the pilot by its bytes instead of decoding")
    ap.add_argument("--key-interval", type=int, default=3000, help="1: every frame a key frame")
    ap.add_argument("--profile", action="store_true")
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
