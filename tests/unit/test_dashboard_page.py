"""The dashboard page's rendering: no value can leave the element it is put in."""

from __future__ import annotations

import json
import re

from taskflow.web.dashboard import json_for_html, render_page, static_file

HOSTILE = "</script><script>alert(1)</script>&<!--\u2028"


def test_json_for_html_keeps_the_value_and_hides_markup() -> None:
    text = json_for_html({"title": HOSTILE})
    assert not re.search(r"[<>&\u2028\u2029]", text)
    assert json.loads(text) == {"title": HOSTILE}


def test_render_page_fills_placeholders_once() -> None:
    template = "<title>{{title}}</title><script type=x>{{config}}</script>{{css}}"
    page = render_page(
        template, title=HOSTILE + "{{config}}", config={"t": HOSTILE}, static_url="/t/s"
    )
    assert page.count("</script>") == 1  # only the template's own
    assert "&lt;/script&gt;" in page and "{{config}}" in page  # escaped, not expanded
    assert "/t/s/dashboard.css?v=" in page


def test_only_plain_asset_names_are_served() -> None:
    assert static_file("dashboard.js") is not None
    for name in ("../dashboard.py", "dashboard.py", ".hidden.js", "a/b.js", "missing.js"):
        assert static_file(name) is None
