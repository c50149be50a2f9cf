"""The dashboard's files keep the page's Content-Security-Policy workable without a browser.

``default-src 'self'`` forbids inline scripts and styles and other origins; the dashboard writes
server data as text only, so nothing the API returns is ever parsed as HTML.
"""

from __future__ import annotations

import re
from pathlib import Path

STATIC = Path(__file__).resolve().parents[2] / "dispatcher" / "console" / "static"


def test_the_dashboard_script_never_writes_html_or_evaluates_strings() -> None:
    script = (STATIC / "app.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                 "setTimeout(\"", "createContextualFragment", "DOMParser"):
        assert sink not in script, f"app.js uses {sink}"


def test_the_page_loads_nothing_inline_and_nothing_from_another_origin() -> None:
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)", page), "an inline script"
    assert "<style" not in page and " style=" not in page, "an inline style"
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "a resource from another origin"
    assert not re.search(r"\son[a-z]+=", page), "an inline event handler"
    styles = (STATIC / "style.css").read_text(encoding="utf-8")
    assert "@import" not in styles and "url(" not in styles
