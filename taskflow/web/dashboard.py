"""The dashboard page: a template file, static assets, and headers a strict CSP can hold.

The page is rendered once per request from ``templates/dashboard.html`` by
replacing three placeholders; everything the scripts need arrives in one
``<script type="application/json">`` block whose JSON cannot close the tag.
All data is rendered by ``static/*.js`` through DOM APIs, never as HTML.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from taskflow.web.access import AdminAccess
from taskflow.web.function_settings import function_settings
from taskflow.web.prefixed_router import PrefixedRouter
from taskflow.web.session_access import page_guard

if TYPE_CHECKING:
    from taskflow.manager import TaskManager

WEB_DIR = Path(__file__).resolve().parent
TEMPLATES = WEB_DIR / "templates"
STATIC = WEB_DIR / "static"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
_PLACEHOLDER = re.compile(r"\{\{(title|config|css|js|boot)\}\}")
# Characters that could end the <script> element or confuse an HTML parser,
# written as JSON escapes: the JSON value is unchanged, the HTML cannot break.
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028"}
_JSON_ESCAPES["\u2029"] = "\\u2029"


def json_for_html(value: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">``."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return re.sub("[<>&\u2028\u2029]", lambda m: _JSON_ESCAPES[m.group()], text)


@lru_cache(maxsize=64)
def asset_version(name: str) -> str:
    """A short content hash, appended to asset URLs so they can be cached for good."""
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]


@lru_cache(maxsize=4)
def _template(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def render_page(template: str, *, title: str, config: dict[str, Any], static_url: str) -> str:
    """Fill the template's placeholders in one pass (a value never becomes a placeholder)."""
    values = {
        "title": html.escape(title, quote=True),
        "config": json_for_html(config),
        "css": html.escape(f"{static_url}/dashboard.css?v={asset_version('dashboard.css')}"),
        "js": html.escape(f"{static_url}/dashboard.js?v={asset_version('dashboard.js')}"),
        "boot": html.escape(f"{static_url}/boot.js?v={asset_version('boot.js')}"),
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def static_file(name: str) -> Path | None:
    """The asset ``name`` under ``static/``, or None for anything else (no path tricks)."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*\.(js|css|svg|png)", name):
        return None
    candidate = STATIC / name
    return candidate if candidate.is_file() else None


def create_dashboard_router(
    task_manager: TaskManager,
    *,
    path: str,
    access: AdminAccess,
    title: str = "taskflow",
    display_func_args: bool = False,
) -> APIRouter:
    """``GET {path}/dashboard`` and its assets under ``{path}/dashboard/static/``."""
    router = PrefixedRouter(prefix=f"{path}/dashboard", include_in_schema=False)

    @router.get("", response_class=HTMLResponse, dependencies=[Depends(page_guard(access))])
    async def dashboard(request: Request) -> Response:
        base = f"{request.scope.get('root_path', '')}{path}"
        config = {
            "base": base,
            "stream": f"{base}/dashboard/stream",
            "title": title,
            "showArgs": display_func_args,
            "functions": function_settings(task_manager),
        }
        page = render_page(
            _template("dashboard.html"),
            title=title,
            config=config,
            static_url=f"{base}/dashboard/static",
        )
        headers = dict(SECURITY_HEADERS, **{"Cache-Control": "no-store"})
        return HTMLResponse(page, headers=headers)

    @router.get("/static/{name}")
    async def static(name: str, v: str | None = None) -> Response:
        asset = static_file(name)
        if asset is None:
            raise HTTPException(404, "Not found")
        # Versioned URLs (content hash) never change; others are revalidated.
        cache = "no-cache"
        if v is not None and v == asset_version(name):
            cache = "public, max-age=31536000, immutable"
        headers = dict(SECURITY_HEADERS, **{"Cache-Control": cache})
        return FileResponse(asset, media_type=MEDIA_TYPES[asset.suffix], headers=headers)

    return router
