"""A two-participant Janus VideoRoom call in headless Chromium, for SFU tests.

The call page runs the VideoRoom client of docs/integrate-browser.md
("4. Janus VideoRoom"), taken from that file, so the documentation is what
is tested. Pages come from the platform's own web server
(tests/support/janus.py PageServer) and load bondline.js from Bondline.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page

from tests.support.janus import PageServer

DOC = Path(__file__).resolve().parents[2] / "docs" / "integrate-browser.md"


def documented_client() -> str:
    """The JavaScript between the janus-videoroom markers of docs/integrate-browser.md."""
    m = re.search(r"<!-- janus-videoroom:begin -->\s*```js\n(.*?)```\s*<!-- janus-videoroom:end -->", DOC.read_text(),
                  re.S)
    if m is None:
        raise AssertionError("docs/integrate-browser.md lost its Janus VideoRoom example")
    return m.group(1)


def add_room_page(site: PageServer, bondline_base: str) -> str:
    """Put the call page on the platform's server; returns its URL."""
    site.pages["room.html"] = f"""<!doctype html><html><head><meta charset=utf-8><title>room</title>
<script src="/adapter.js"></script>
<script src="{bondline_base}/plugin/bondline.js"></script>
<script src="/janus.js"></script>
<script>
{documented_client()}
</script></head><body></body></html>"""
    return site.origin + "/room.html"


def join(browser: Browser, url: str, config: dict[str, Any]) -> Page:
    """Open the page and join the room; returns once this participant is publishing."""
    page = browser.new_page()
    page.goto(url)
    page.evaluate("(o) => { window.room = joinJanusRoom(o); }", config)
    page.wait_for_function("() => window.room.published === true", timeout=30_000)
    return page


def wait_receiving(page: Page, timeout_ms: int = 30_000) -> None:
    """Until this page renders the other participant's audio and video."""
    page.wait_for_function(
        "() => Object.values(window.room.remote).filter((e) => e.tagName === 'VIDEO' && e.readyState >= 2).length >= 1"
        " && Object.values(window.room.remote).some((e) => e.tagName === 'AUDIO')", timeout=timeout_ms)
