"""/help/<page>: Bondline's own docs (docs/*.md) as pages, so the reports'
"how this is decided" links open in the browser instead of naming a file.

Only the Markdown files of the docs folder are served, by bare name
(``/help/methodology``); headings get GitHub-style ids so report links can
point at a section (``/help/methodology#client-course``).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from markdown_it import MarkdownIt
from markupsafe import Markup
from starlette.responses import Response

from server.web.pages import render

router = APIRouter(include_in_schema=False)
NAME = re.compile(r"^[a-z][a-z0-9-]{0,40}$")
SOURCE_DOCS = Path(__file__).resolve().parent.parent.parent / "docs"


def slug(text: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def docs_dir(request: Request) -> Path:
    configured = request.app.state.settings.docs_dir
    return Path(configured) if configured else SOURCE_DOCS


@lru_cache(maxsize=32)
def _render(path: Path, mtime_ns: int) -> tuple[str, Markup]:
    md = MarkdownIt("commonmark").enable("table")
    tokens = md.parse(path.read_text(encoding="utf-8"))
    title = path.stem
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open" and i + 1 < len(tokens):
            text = tokens[i + 1].content
            tok.attrSet("id", slug(text.replace("`", "")))
            if tok.tag == "h1" and title == path.stem:
                title = text
        if tok.type == "table_open":
            # Wide doc tables scroll in their own box on a phone (see bondline.css).
            tok.attrSet("class", "doc-table")
    html = md.renderer.render(tokens, md.options, {})
    # A box that scrolls must be reachable by keyboard (WCAG 2.1.1).
    html = html.replace("<pre>", '<pre tabindex="0">').replace('<table class="doc-table">',
                                                                '<table class="doc-table" tabindex="0">')
    # Links between docs ("methodology.md#x") stay inside /help/.
    html = re.sub(r'href="(?:\./)?([a-z][a-z0-9-]*)\.md(#[^"]*)?"', lambda m: f'href="/help/{m[1]}{m[2] or ""}"', html)
    return title, Markup(html)


@router.get("/help/{name}", response_class=HTMLResponse)
def help_page(name: str, request: Request) -> Response:
    if not NAME.match(name):
        raise HTTPException(404, "no such help page")
    path = docs_dir(request) / f"{name}.md"
    if not path.is_file():
        raise HTTPException(404, f"no help page {name!r} on this server (its docs folder is not installed)")
    title, body = _render(path, path.stat().st_mtime_ns)
    return render(request, "help.html", {"title": title, "body": body})
