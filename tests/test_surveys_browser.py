"""The client's survey in headless Chromium: phone-sized screen, keyboard
only, JavaScript off. Fill part of it, send, see the problems named with the
answers kept; finish it, see the thank-you page; reopen the link and see
"already answered". Also checks the page's accessibility basics (labels,
legends, focus outline, contrast, no sideways scrolling at 360 px)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.browser_call import BASE_ARGS
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
WAI = {f"wai-sr-client:{n}": v for n, v in enumerate([5, 4, 3, 2, 1, 5, 4, 3, 2, 1, 5, 4], start=1)}
TELE = {"bondline-telehealth:tech_interfered": 2, "bondline-telehealth:felt_heard_seen": 5,
        "bondline-telehealth:session_changed": 1, "bondline-telehealth:hard_to_talk": 2}
FOCUSED = """() => { const e = document.activeElement;
  return {tag: e.tagName, type: e.type || null, name: e.name || null, value: e.value || null,
          checked: !!e.checked,
          values: e.type === 'radio'
            ? [...document.getElementsByName(e.name)].map(x => x.value) : null}; }"""


def fill_by_keyboard(page: Any, wanted: dict[str, int]) -> None:
    """Tab through the form; in each radio group named in ``wanted`` pick the
    value with Space and the arrow keys; stop on the submit button and press
    Enter. Only key presses change the page; it is read to know where focus is."""
    for _ in range(500):
        page.keyboard.press("Tab")
        f = page.evaluate(FOCUSED)
        if f["tag"] == "BUTTON":
            with page.expect_navigation():
                page.keyboard.press("Enter")
            return
        if f["type"] != "radio" or f["name"] not in wanted:
            continue
        target = str(wanted[f["name"]])
        if f["checked"] and f["value"] == target:
            continue
        if not f["checked"]:
            page.keyboard.press("Space")
        steps = f["values"].index(target) - f["values"].index(f["value"])
        for _ in range(abs(steps)):
            page.keyboard.press("ArrowDown" if steps > 0 else "ArrowUp")
        assert page.evaluate(FOCUSED)["value"] == target
    raise AssertionError("never reached the submit button")


def _rgb(css: str) -> tuple[float, ...]:
    nums = [float(x) for x in re.findall(r"[\d.]+", css)[:3]]
    return tuple(nums)


def contrast(fg: str, bg: str) -> float:
    def lum(rgb: tuple[float, ...]) -> float:
        def ch(c: float) -> float:
            c /= 255
            return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
        r, g, b = (ch(c) for c in rgb)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    hi, lo = sorted((lum(_rgb(fg)), lum(_rgb(bg))), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def check_page_basics(page: Any) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth"), \
        "horizontal scrolling at this width"
    assert page.evaluate("[...document.querySelectorAll('input')].every(i => i.labels && i.labels.length === 1)")
    assert page.evaluate("[...document.querySelectorAll('fieldset')].every(f => f.querySelector(':scope > legend'))")
    assert page.evaluate("document.documentElement.lang") == "en"
    pairs = page.evaluate("""() => {
        const bg = e => { while (e) { const c = getComputedStyle(e).backgroundColor;
            if (c && c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent') return c; e = e.parentElement; }
            return 'rgb(255, 255, 255)'; };
        return [...document.querySelectorAll('legend, label span, p, h1, h2, a, button, .error')]
            .map(e => [e.tagName + '.' + e.className, getComputedStyle(e).color, bg(e)]); }""")
    for what, fg, bg in pairs:
        assert contrast(fg, bg) >= 4.5, f"{what}: contrast {contrast(fg, bg):.2f} ({fg} on {bg})"


def test_client_fills_the_form_with_the_keyboard_on_a_phone(sqlite_server: ServerProcess) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    s = sqlite_server.create_session(client_code="C-PHONE")
    url = {x["respondent"]: x["url"] for x in s["survey_links"]}["client"]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=BASE_ARGS)
        try:
            context = browser.new_context(viewport={"width": 360, "height": 740}, java_script_enabled=False,
                                          is_mobile=True, has_touch=True)
            page = context.new_page()
            page.goto(url)
            assert page.locator("h1").inner_text() == "How did your session go?"
            check_page_basics(page)

            # The focused choice shows a visible outline.
            page.keyboard.press("Tab")
            focused_label = page.evaluate(
                "getComputedStyle(document.activeElement.closest('label')).outlineStyle"
            )
            assert focused_label != "none"
            page.screenshot(path=str(ARTIFACTS / "surveys-phone-form.png"), full_page=True)

            # Part of the form only: every blank is named, the answers given are kept.
            first_part = {k: v for k, v in WAI.items() if k not in ("wai-sr-client:3", "wai-sr-client:11")}
            page.goto(url)
            fill_by_keyboard(page, first_part)
            assert page.locator("#summary").is_visible()
            summary = page.locator("#summary").inner_text()
            assert "question 3: no answer chosen" in summary and "question 11: no answer chosen" in summary
            assert "Telehealth, question 1: no answer chosen" in summary
            for name, value in first_part.items():
                assert page.locator(f'input[name="{name}"][value="{value}"]').is_checked(), name
            check_page_basics(page)
            page.screenshot(path=str(ARTIFACTS / "surveys-phone-errors.png"), full_page=True)

            # Finish it (keyboard again) and send.
            fill_by_keyboard(page, {**WAI, **TELE})
            assert page.locator("h1").inner_text() == "Thank you"
            assert page.url.endswith("/survey/thanks")
            page.screenshot(path=str(ARTIFACTS / "surveys-phone-thanks.png"))

            page.goto(url)
            assert page.locator("h1").inner_text() == "Already answered"
            assert "C-PHONE" not in page.content()
            context.close()
        finally:
            browser.close()

    got = httpx.get(f"{sqlite_server.base}/api/v1/sessions/{s['id']}/ratings",
                    headers=sqlite_server.admin_headers).json()
    by_id = {r["instrument_id"]: r for r in got}
    assert by_id["wai-sr-client"]["answers"] == {k.split(":")[1]: v for k, v in WAI.items()}
    assert by_id["wai-sr-client"]["total"] == 39.0
    assert by_id["bondline-telehealth"]["total"] == 6.0
