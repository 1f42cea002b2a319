"""Wait for the machine to settle before a call whose timing is measured.

Ground-truth calls compare what a real call measured with what the test
imposed; a browser or server still shutting down from the previous module
shows up in them as real lateness (a capture timer a frame late, audio
blocks late). They run first (tests/conftest.py) and, before each call,
wait here until the CPUs have been mostly idle for a moment.
"""

from __future__ import annotations

import time


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return idle, sum(fields)


def wait_for_quiet(min_idle: float = 0.85, window_s: float = 0.5, settled: int = 2, timeout_s: float = 20.0) -> str:
    """Block until ``settled`` windows in a row were at least ``min_idle``
    idle (or ``timeout_s`` passed); return what happened, for the log."""
    start = time.monotonic()
    calm, last = 0, 0.0
    idle0, total0 = _cpu_times()
    while time.monotonic() - start < timeout_s:
        time.sleep(window_s)
        idle1, total1 = _cpu_times()
        last = (idle1 - idle0) / max(1, total1 - total0)
        idle0, total0 = idle1, total1
        calm = calm + 1 if last >= min_idle else 0
        if calm >= settled:
            return f"quiet after {time.monotonic() - start:.1f} s (idle {last:.0%})"
    return f"not quiet after {timeout_s:.0f} s (idle {last:.0%}); going on"
