"""Times on pages: UTC in the HTML, the reader's own zone in the browser.

``local_time(ms)`` writes ``<time datetime="...Z" data-format="datetime">``
with a UTC text; /static/local-time.js (loaded by base.html) rewrites it in
the browser's time zone and language. The server does not know a
clinician's zone; their browser does, and a phone that travels with them
keeps it right.
"""

from __future__ import annotations

import time
from typing import Literal

from markupsafe import Markup

from server.timeutil import to_iso

Format = Literal["datetime", "date", "seconds"]
_UTC = {"datetime": "%Y-%m-%d %H:%M UTC", "date": "%Y-%m-%d", "seconds": "%Y-%m-%d %H:%M:%S UTC"}


def local_time(ms: int | None, fmt: Format = "datetime", missing: str = "") -> Markup:
    if ms is None:
        return Markup("{}").format(missing)
    text = time.strftime(_UTC[fmt], time.gmtime(ms / 1000))
    return Markup('<time datetime="{}" data-format="{}">{}</time>').format(to_iso(ms), fmt, text)


def ago(ms: int | None, now_ms: int) -> str:
    """"today", "yesterday", "5 days ago", "3 weeks ago": for lists read at a glance."""
    if ms is None:
        return ""
    days = int((now_ms - ms) // 86_400_000)
    if days <= 0:
        return "today"
    if days == 1:
        return "yesterday"
    if days < 14:
        return f"{days} days ago"
    if days < 61:
        return f"{days // 7} weeks ago"
    return f"{days // 30} months ago"
