"""Every page, as people use it: a real browser (Debian Chromium) at desktop
(1366x900) and phone (390x844) sizes, against one ``bondline serve --demo``
built once for the module.

For each page and size: nothing scrolls sideways, axe-core (the copy bundled
by the axe-playwright-python package, no CDN) finds no serious or critical
violation, no script error or CSP refusal, and a full-page screenshot is
kept in test-artifacts/pages/. Then every form is used with the keyboard
only, and the caseload's plain sentence and attention column are checked
against what the demo planted (server/demo/plan.py: the rating model's
effect and one rupture per clinician).

The demo's seed is BONDLINE_TEST_DEMO_SEED (printed), so a failing caseload
can be rebuilt and looked at with ``bondline demo --seed N``.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, sync_playwright

from server.demo.build import build_demo
from server.demo.plan import WEEK_MS, plan_caseload
from tests.support.browser_call import ARTIFACTS, CALL_ARGS
from tests.support.login import create_user, login_page
from tests.support.server import ADMIN_KEY
from tests.test_reports_pages import start_demo_server, stop_server

pytestmark = pytest.mark.browser

SIZES = {"desktop": (1366, 900), "phone": (390, 844)}
SHOTS = ARTIFACTS / "pages"
SEED = int(os.environ.get("BONDLINE_TEST_DEMO_SEED", "21"))
DEMO = {"clinicians": 2, "clients_per_clinician": 5, "sessions": (7, 9), "duration_s": (360, 360)}
ADMIN = ("pages.admin@example.org", "admin pages password 1")
EMPTY = ("pages.empty@example.org", "empty caseload password 1")
AXE = Axe()
# The demo's "now": the planted sessions' dates are fixed by it, so the plan can be rebuilt here.
NOW = int(time.time() * 1000)
# Swagger UI and ReDoc are vendor pages: checked to work offline, not audited by axe here.
NOT_AUDITED = {"api-docs", "redoc"}


@dataclass
class Site:
    base: str
    db: Path
    logins: list[tuple[str, str]]
    proc: subprocess.Popen[bytes]
    survey_url: str
    check_url: str
    never_started: int


def api(site: Site, method: str, path: str, **kw: Any) -> Any:
    r = httpx.request(method, site.base + path, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30, **kw)
    assert r.status_code < 300, (r.status_code, r.text)
    return r.json()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    print(f"demo caseload seed {SEED} (BONDLINE_TEST_DEMO_SEED)")
    tmp = tmp_path_factory.mktemp("pages")
    db = tmp / "demo.db"
    result = build_demo(str(db), SEED, now_ms=NOW, **DEMO)  # type: ignore[arg-type]
    create_user(str(db), *ADMIN, is_admin=True)
    create_user(str(db), *EMPTY)
    proc = start_demo_server(db, tmp / "server.log")
    base: str = proc.base  # type: ignore[attr-defined]
    partial = Site(base, db, result.logins, proc, "", "", 0)
    # A session of clinician A that never started: its report must say "no data".
    created = api(partial, "POST", "/api/v1/sessions",
                  json={"clinician": result.logins[0][0], "client_code": "DEMO-001"})
    # The client's survey and connection check of a session outside the planted caseloads,
    # so sending the survey changes nothing the planted-truth test reads.
    other = api(partial, "POST", "/api/v1/sessions", json={"clinician": "pages.survey@example.org",
                                                          "client_code": "PAGES-1"})
    survey = {x["respondent"]: x["url"] for x in other["survey_links"]}["client"]
    check = api(partial, "POST", f"/api/v1/sessions/{other['id']}/probe/check-link", json={"role": "client"})
    try:
        yield Site(base, db, result.logins, proc, survey, check["url"], created["id"])
    finally:
        stop_server(proc)


# ReDoc's sidebar shows its maker's logo from the maker's CDN; our CSP refuses it
# before any request leaves the machine (``outside`` below stays empty). Only that.
VENDOR_LOGO = "Loading the image 'https://cdn.redoc.ly/"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_playwright() as pw:
        # The call flags: pages here also hold WebRTC calls over loopback.
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CALL_ARGS)
        try:
            yield b
        finally:
            b.close()


class Watch:
    """Script errors, CSP refusals and failed requests of one page."""

    def __init__(self, page: Page, base: str) -> None:
        self.problems: list[str] = []
        self.outside: list[str] = []
        page.on("console", lambda m: self.problems.append(m.text)
                if m.type == "error" and not m.text.startswith(("Failed to load resource", VENDOR_LOGO)) else None)
        page.on("pageerror", lambda e: self.problems.append(str(e)))
        page.on("response", lambda r: self.problems.append(f"{r.status} {r.url}")
                if r.status >= 400 and not getattr(self, "expect_error", False) else None)
        # Nothing may leave this machine: a page that needs a CDN fails here.
        page.route(re.compile(r"^(?!http://127\.0\.0\.1[:/]|data:|blob:).*"),
                   lambda route: (self.outside.append(route.request.url), route.abort()))


def check_page(page: Page, name: str, size: str, audit: bool = True) -> None:
    page.wait_for_load_state("load")
    width = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width[0] <= width[1], f"{name} at {size}: scrolls sideways ({width[0]} px content in {width[1]} px)"
    # Nothing clipped at the right edge: every visible element ends inside the viewport,
    # unless it sits in a box of its own that scrolls (or clips) sideways.
    clipped = page.evaluate("""() => {
        const w = document.documentElement.clientWidth, out = [];
        const boxed = el => {
            for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
                if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(a).overflowX)) return true;
            }
            return false;
        };
        for (const el of document.querySelectorAll('body *')) {
            const r = el.getBoundingClientRect();
            if (!r.width || !r.height || getComputedStyle(el).visibility === 'hidden') continue;
            if (el.closest('.vh, .skip, thead')) continue;
            if (r.right > w + 1 && !boxed(el)) {
                out.push(el.tagName + '.' + el.className + ' ' + (el.textContent || '').slice(0, 40));
            }
        }
        return out.slice(0, 5);
    }""")
    assert not clipped, f"{name} at {size}: cut off at the right edge: {clipped}"
    if audit:
        result = AXE.run(page, options={"resultTypes": ["violations"],
                                        "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21aa"]}})
        bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in result.response["violations"]
               if v["impact"] in ("serious", "critical")]
        assert not bad, f"{name} at {size}: axe: {bad}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    # The vendors' long API references: the first screen is enough to look at.
    page.screenshot(path=str(SHOTS / f"{name}-{size}.png"), full_page=name not in NOT_AUDITED)


def tab_to(page: Page, selector: str, limit: int = 80) -> None:
    """Press Tab until the focused element matches ``selector`` (as a keyboard user would)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement && document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} cannot be reached with the Tab key")


def clinician_pages(page: Page, site: Site) -> dict[str, str]:
    """Names and URLs of clinician A's pages, found by following the caseload's own links."""
    page.goto(site.base + "/reports/caseload")
    client = page.locator("#clients tbody tr a").first.get_attribute("href")
    page.goto(site.base + str(client))
    rows = page.locator("#course tbody tr").all()
    minutes = [int(r.locator("td").nth(2).inner_text().split("/")[0]) if "no data" not in r.inner_text() else -1
               for r in rows]
    session = rows[minutes.index(max(minutes))].locator("a").first.get_attribute("href")
    return {
        "caseload": "/reports/caseload",
        "course": str(client),
        "session": str(session),
        "session-no-data": f"/reports/sessions/{site.never_started}",
        "own-rating": f"/sessions/{site.never_started}/rating",
        "password": "/account/password",
        "erase": "/clients/erase",
        "help": "/help/reports",
        "not-found": "/reports/sessions/999999",
    }


def test_every_page_at_desktop_and_phone_sizes(site: Site, browser: Any) -> None:
    public = {"home": "/", "login": "/login", "survey": site.survey_url.replace(site.base, ""),
              "check": site.check_url.replace(site.base, ""), "demo-call": "/demo/call",
              "api-docs": "/docs", "redoc": "/redoc"}
    for size, (w, h) in SIZES.items():
        ctx = browser.new_context(viewport={"width": w, "height": h})
        page = ctx.new_page()
        watch = Watch(page, site.base)
        for name, path in public.items():
            page.goto(site.base + path)
            if name == "api-docs":
                page.wait_for_selector(".opblock", timeout=20_000)
                assert page.locator("button.authorize").count() == 1
            elif name == "redoc":
                page.wait_for_selector("h1", timeout=20_000)
            check_page(page, name, size, audit=name not in NOT_AUDITED)
        login_page(page, site.base, *site.logins[0])
        pages = clinician_pages(page, site)
        for name, path in pages.items():
            watch.expect_error = name == "not-found"  # type: ignore[attr-defined]
            page.goto(site.base + path)
            check_page(page, name, size)
            if size == "phone" and name in PHONE_CHARTS:
                phone_details(page, name)
            if size == "desktop" and name == "session":
                printed(page)
        watch.expect_error = False  # type: ignore[attr-defined]
        ctx.close()
        ctx = browser.new_context(viewport={"width": w, "height": h})
        page = ctx.new_page()
        watch2 = Watch(page, site.base)
        login_page(page, site.base, *ADMIN)
        for name in ("users", "api-keys", "audit"):
            page.goto(f"{site.base}/admin/{name}")
            check_page(page, f"admin-{name}", size)
        ctx.close()
        ctx = browser.new_context(viewport={"width": w, "height": h})
        page = ctx.new_page()
        watch3 = Watch(page, site.base)
        login_page(page, site.base, *EMPTY)
        page.goto(site.base + "/reports/caseload")
        # An empty caseload draws no chart (no 0-1 axis on a 1-5 scale), and says why.
        assert page.locator(".chart").count() == 0 and page.locator("#no-chart").is_visible()
        check_page(page, "caseload-empty", size)
        ctx.close()
        for w_ in (watch, watch2, watch3):
            assert not w_.problems, (size, w_.problems)
            assert not w_.outside, (size, "requests to other hosts", w_.outside)


PHONE_CHARTS = {"caseload": "scatter", "course": "course", "session": "timeline"}


def phone_details(page: Page, name: str) -> None:
    """On a phone the charts are the ones drawn for it, with legible text; the
    course table's flag column is on screen; the session's figures are explained."""
    kind = PHONE_CHARTS[name]
    assert page.locator(f".chart.{kind}.chart-wide").first.is_hidden()
    chart = page.locator(f".chart.{kind}.chart-narrow svg").first
    assert chart.is_visible()
    # The smallest chart text, in CSS pixels as shown: legible (the wide drawing gave ~4 px).
    smallest = chart.evaluate("""svg => Math.min(...[...svg.querySelectorAll('text')]
        .map(t => t.getBoundingClientRect().height).filter(h => h > 0))""")
    assert smallest >= 8, f"{name}: chart text {smallest:.1f} px high"
    if name == "course":
        box = page.locator("#course tbody td[data-label=Flag]").first.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    if name == "session":
        # Thresholds are drawn on the timelines, and the figures are explained in words.
        assert "limit 400" in chart.inner_html()
        glossary = page.locator("#glossary").inner_text()
        for term in ("Round-trip time (RTT)", "Packet loss", "Concealment", "Voice quality (MOS)"):
            assert term in glossary


def printed(page: Page) -> None:
    """Printed, the session report drops the navigation and keeps the wide charts."""
    page.emulate_media(media="print")
    assert not page.locator("header").is_visible() and not page.locator("nav.crumbs").is_visible()
    assert page.locator(".chart.timeline.chart-wide svg").first.is_visible()
    assert page.locator(".chart.timeline.chart-narrow svg").first.is_hidden()
    page.screenshot(path=str(SHOTS / "session-print.png"), full_page=True)
    page.emulate_media(media="screen")


def test_forms_by_keyboard_alone(site: Site, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844})
    try:
        kb = page.keyboard
        # Log in.
        page.goto(site.base + "/login")
        tab_to(page, "#email")
        kb.type(site.logins[0][0])
        kb.press("Tab")
        kb.type(site.logins[0][1])
        with page.expect_navigation():
            kb.press("Enter")
        assert "/login" not in page.url
        # The caseload's outcome menu.
        page.goto(site.base + "/reports/caseload")
        tab_to(page, "#outcome")
        kb.press("ArrowDown")
        tab_to(page, "form.row button[type=submit]")
        with page.expect_navigation():
            kb.press("Enter")
        assert "outcome=client.wai-sr-client.mean" in page.url
        # The Details of the model open from the keyboard.
        tab_to(page, "#details > summary")
        kb.press("Enter")
        assert page.locator("#details").get_attribute("open") is not None
        # The clinician's own rating: every question answered with arrow keys, sent with Enter.
        page.goto(f"{site.base}/sessions/{site.never_started}/rating")
        assert "Your rating of session" in page.locator("h1").inner_text()
        questions = page.locator("fieldset.item").count()
        for i in range(questions):
            tab_to(page, f"fieldset.item:nth-of-type({i + 1}) input[type=radio]")
            kb.press("Space")
        tab_to(page, "button[type=submit]")
        with page.expect_navigation():
            kb.press("Enter")
        assert "Rating saved" in page.content()
        # ...and corrected, by keyboard too.
        tab_to(page, "a[href$='?correct=1']")
        with page.expect_navigation():
            kb.press("Enter")
        assert page.locator("#correcting").is_visible()
        tab_to(page, "button[type=submit]")
        with page.expect_navigation():
            kb.press("Enter")
        assert "Rating saved" in page.content()
        # The client's survey: every question by keyboard; progress follows the answers.
        page.goto(site.survey_url)
        total = int(page.locator("#progress").get_attribute("data-total") or 0)
        ids = [f.get_attribute("id") for f in page.locator("fieldset.item").all()]
        assert len(ids) == total
        for n, fid in enumerate(ids, start=1):
            tab_to(page, f"#{fid} input[type=radio]")
            kb.press("Space")
            assert page.locator("#progress-text").inner_text() == f"{n} of {total} answered"
        tab_to(page, "button[type=submit]")
        with page.expect_navigation():
            kb.press("Enter")
        assert "Thank you" in page.content()
        # The demo call starts from the keyboard, with the synthetic source.
        page.goto(site.base + "/demo/call")
        tab_to(page, "#demo-start-button")
        kb.press("Enter")
        page.wait_for_function("() => window.bondlineDemo && window.bondlineDemo.session", timeout=20_000)
        # The synthetic media really flows: both sides' samples reach the server.
        for role in ("clinician", "client"):
            page.wait_for_function(
                f"() => Number(document.querySelector('#side-{role} td[data-f=stored]').textContent) >= 2",
                timeout=30_000)
        tab_to(page, "#demo-hangup")
        kb.press("Enter")
        page.wait_for_function("() => document.getElementById('demo-status').textContent.includes('ended')",
                               timeout=20_000)
    finally:
        page.close()


def test_admin_confirms_before_acting(site: Site, browser: Any) -> None:
    """Reset password and disable ask first; the first press changes nothing."""
    create_user(str(site.db), "pages.victim@example.org", "victim password 12")
    page = browser.new_page(viewport={"width": 390, "height": 844})
    try:
        kb = page.keyboard
        login_page(page, site.base, *ADMIN)
        page.goto(site.base + "/admin/users")
        row = page.locator("tr", has_text="pages.victim@example.org")
        summary = row.locator("details.confirm.danger > summary")
        summary.focus()
        kb.press("Enter")  # opens the confirmation; nothing is sent yet
        assert row.locator("td", has_text="active").count() == 1
        assert row.locator("details.confirm.danger p").is_visible()
        tab_to(page, "details.confirm.danger[open] button.danger")
        with page.expect_navigation():
            kb.press("Enter")
        assert page.locator("tr", has_text="pages.victim@example.org").locator("td", has_text="disabled").count()
        # Audit times are readable words in the reader's zone, the UTC value on hover.
        page.goto(site.base + "/admin/audit")
        first = page.locator("table.list tbody tr td time").first
        assert first.get_attribute("data-local") == "1"
        assert not re.search(r"\d{4}-\d\d-\d\dT", first.inner_text()), first.inner_text()
        assert (first.get_attribute("title") or "").endswith("UTC")
    finally:
        page.close()


def test_plain_sentence_and_attention_against_the_planted_truth(site: Site, browser: Any) -> None:
    plan = plan_caseload(SEED, now_ms=NOW, **DEMO)  # type: ignore[arg-type]
    effect10 = -0.04 * 10  # RatingModel().effect per 10 minutes
    for who, planned in zip(site.logins, plan, strict=True):
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        login_page(page, site.base, *who)
        now = page.evaluate("() => Date.now()")
        page.goto(site.base + "/reports/caseload")
        lead = page.locator("#plain-sentence")
        text = lead.inner_text()
        assert "not proof of cause" in text and "10 more disrupted minutes" in text
        low, high, est = (float(lead.get_attribute(f"data-{k}") or "nan") for k in ("low", "high", "estimate"))
        # The stated interval covers the planted effect, and the words follow the numbers.
        assert low <= effect10 <= high, (low, high, text)
        assert f"about {abs(est):.2f} points {'lower' if est < 0 else 'higher'}" in text
        assert f"{abs(low):.2f}" in text and f"{abs(high):.2f}" in text
        # The model is there, folded away; the intercept has no p-value.
        assert page.locator("#details").get_attribute("open") is None
        assert "&lt;" not in page.locator("tr[data-term=intercept] td").last.inner_html()
        assert (page.locator("#multiple-tests").text_content() or "").strip().startswith(
            f"{page.locator('#correlations tbody tr').count()} correlations are tested here at once")
        rows = {r.get_attribute("data-client"): r for r in page.locator("#clients tbody tr").all()}
        levels = [r.get_attribute("data-level") for r in page.locator("#clients tbody tr").all()]
        assert levels == sorted(levels, key=["red", "amber", "green"].index), "not sorted by need"
        since = now - 4 * WEEK_MS
        for client in planned.clients:
            row = rows[client.code]
            cells = {c.get_attribute("data-label"): c.inner_text() for c in row.locator("td").all()}
            last = client.sessions[-1]
            if last.planted_rupture:
                assert row.get_attribute("data-level") == "red", (client.code, cells)
                assert f"session {last.number}" in cells["Attention"] and "bond fell" in cells["Attention"].lower()
                assert cells["Last rupture"].startswith(f"session {last.number}")
            # Sessions near the window's edge may fall either side while the test runs: skip those clients.
            if any(abs(s.start_ms - since) < 15 * 60_000 for s in client.sessions):
                continue
            recent = [s for s in client.sessions if s.start_ms >= since]
            unrated = [s for s in recent if ("client", "wai-sr-client") not in s.answers]
            assert cells["Missing ratings"] == str(len(unrated)), (client.code, cells)
            # Disrupted (>= 3 detected minutes): detection is within 2 minutes of the planted truth.
            shown = int(cells["Disrupted, last 4 weeks"].split(" of ")[0])
            sure = sum(s.disrupted_minutes >= 5 for s in recent)
            maybe = sum(s.disrupted_minutes >= 1 for s in recent)
            assert sure <= shown <= maybe, (client.code, cells, [s.disrupted_minutes for s in recent])
            assert cells["Disrupted, last 4 weeks"].endswith(f" of {len(recent)}")
            if unrated:
                assert row.get_attribute("data-level") in ("red", "amber")
                assert "no client rating" in cells["Attention"]
        # The planted rupture's session report joins the bond, its usual level and the flag.
        rupture = next(c for c in planned.clients if c.sessions[-1].planted_rupture)
        rows[rupture.code].locator("td[data-label='Last rupture'] a").click()
        sentence = page.locator("#session-sentence").inner_text()
        assert re.match(r"^Bond \d\.\d\d, well below the client's usual \d\.\d\d: it fell \d\.\d+, more than "
                        r"the \d\.\d+ that counts as a reliable change \(rupture flag\); "
                        r"(this session had \d+ disrupted minutes? of|the connection had no disrupted)", sentence)
        assert page.locator("#bond-context .flag").inner_text().startswith("Yes: fell")
        page.close()


CALL_JS = b"""(async function () {
  var media = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  var a = new RTCPeerConnection(), b = new RTCPeerConnection();
  media.getTracks().forEach(function (t) { a.addTrack(t, media); });
  a.onicecandidate = function (e) { if (e.candidate) b.addIceCandidate(e.candidate); };
  b.onicecandidate = function (e) { if (e.candidate) a.addIceCandidate(e.candidate); };
  await a.setLocalDescription(await a.createOffer());
  await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription(await b.createAnswer());
  await a.setRemoteDescription(b.localDescription);
  window.callUp = true;
})();
"""


def platform_page(site: Site, token: str) -> tuple[Any, str]:
    """A telehealth platform's call page on another origin, under a strict CSP
    (no inline script), loading the plugin by the external-script snippet."""
    import http.server
    import threading

    from server.api.sessions import plugin_snippet_external

    html = (f"<!doctype html><html lang=en><title>Platform call</title>"
            f"{plugin_snippet_external(site.base, token).replace('></script>', ' data-bondline-badge=on></script>')}"
            "<script src=/call.js></script></html>").encode()
    ws = site.base.replace("http://", "ws://")
    csp = f"default-src 'self'; script-src 'self' {site.base}; connect-src 'self' {site.base} {ws}"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            body, kind = (CALL_JS, "text/javascript") if self.path == "/call.js" else (html, "text/html")
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Security-Policy", csp)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/"


def test_refused_origin_is_said_and_the_badge_never_says_good(site: Site, browser: Any) -> None:
    """A platform page the server does not allow: the external-script snippet
    runs under its strict CSP, the plugin says what to set, and its badge says
    nothing is recorded instead of "good"."""
    created = api(site, "POST", "/api/v1/sessions", json={"clinician": "pages.survey@example.org",
                                                          "client_code": "PAGES-2"})
    external = {p["role"]: p["snippet_external"] for p in created["participants"]}["client"]
    assert "<script>" not in external and 'data-bondline-token="' in external
    token = {p["role"]: p["token"] for p in created["participants"]}["client"]
    httpd, url = platform_page(site, token)
    try:
        page = browser.new_page()
        messages: list[str] = []
        page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
        page.goto(url)
        page.wait_for_function("() => window.callUp && window.Bondline && Bondline.status()", timeout=20_000)
        page.wait_for_function("() => Bondline.status().badge === 'refused'", timeout=20_000)
        status = page.evaluate("() => Bondline.status()")
        assert status["delivery"] == "refused" and status["acked"] == 0
        assert "4403: origin http://127.0.0.1:" in status["failed"]
        badge = page.locator(".bondline-badge")
        assert badge.inner_text() == "Bondline: not recording (server refused)"
        assert badge.get_attribute("data-state") == "refused"
        warned = [m for m in messages if "BONDLINE_ALLOWED_ORIGINS" in m]
        assert warned and warned[0].startswith("warning:"), messages
        # The strict policy was kept: no inline script was needed, none was refused.
        assert not [m for m in messages if "Content Security Policy" in m], messages
        page.close()
    finally:
        httpd.shutdown()
    samples = api(site, "GET", f"/api/v1/sessions/{created['id']}/samples")
    assert samples == []
