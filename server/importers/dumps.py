"""Reading Chromium's WebRTC dumps into per-connection timelines of stats polls.

Two formats, both saved from ``chrome://webrtc-internals`` (docs/integrate-browser.md,
"Importing a dump"), each plain or gzip-compressed, recognised from the
content: the webrtc-internals dump (server/importers/internals.py) and the
rtcstats dump (server/importers/rtcstats.py). Files are read as a stream
within a size limit (server/importers/source.py). Anything malformed,
truncated or not finite raises DumpError with the reason; nothing is
guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from server.importers.internals import parse_internals
from server.importers.model import SAME_POLL_MS, DumpError, Timeline
from server.importers.rtcstats import parse_rtcstats
from server.importers.source import DumpSource

__all__ = ["SAME_POLL_MS", "Dump", "DumpError", "Timeline", "load_dump"]

# The default import limit on a dump's size once unpacked (BONDLINE_IMPORT_MAX_BYTES).
DEFAULT_MAX_BYTES = 256 << 20


@dataclass
class Dump:
    format: str  # "webrtc-internals" or "rtcstats"
    name: str
    sha256: str  # of the file as stored
    compressed: bool
    size: int  # bytes once unpacked
    timelines: list[Timeline]


def load_dump(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Dump:
    """Read a dump file of either format."""
    with DumpSource(path, max_bytes) as first:
        first.start()
        first.measure()
    with DumpSource(path, max_bytes) as src:
        head = src.start().lstrip()
        if head.startswith(b"RTCStatsDump"):
            fmt, timelines = "rtcstats", parse_rtcstats(src)
        elif head.startswith(b"{"):
            fmt, timelines = "webrtc-internals", parse_internals(src)
        else:
            raise DumpError(f"{path.name}: not a WebRTC dump: neither a webrtc-internals dump (a JSON object) "
                            "nor an rtcstats dump (first line 'RTCStatsDump')")
        return Dump(fmt, path.name, src.sha256(), src.compressed, src.read_bytes, timelines)
