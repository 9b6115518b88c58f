"""``{path}/auth/...``: the login form, login, logout, and the session the dashboard reads.

The form posts ``application/x-www-form-urlencoded``, parsed here with the
standard library so the admin needs no multipart package.  Logout is a POST
that needs the session's CSRF token: a link or image on another site cannot
log anyone out.
"""

from __future__ import annotations

import hmac
import html
import re
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from taskflow.web.access import Actor, AdminAccess
from taskflow.web.auth import MAX_USERNAME, TaskAuthBackend, authenticate
from taskflow.web.prefixed_router import PrefixedRouter
from taskflow.web.session_access import (
    CSRF_HEADER,
    SessionAccess,
    refuse_cross_site,
    request_session,
)
from taskflow.web.sessions import COOKIE_NAME
from taskflow.web.throttle import LoginThrottle

if TYPE_CHECKING:
    from taskflow.manager import TaskManager

WEB_DIR = Path(__file__).resolve().parent
MAX_FORM_BYTES = 8192
MAX_PASSWORD = 1024
INVALID = "Invalid username or password."
FORM_TYPE = "application/x-www-form-urlencoded"
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@lru_cache(maxsize=1)
def _template() -> str:
    return (WEB_DIR / "templates" / "login.html").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _stylesheet() -> bytes:
    return (WEB_DIR / "static" / "login.css").read_bytes()


def render_login(*, title: str, action: str, css: str, error: str = "", username: str = "") -> str:
    """The login page; every value is HTML-escaped and filled in one pass."""
    values = {
        "title": html.escape(title),
        "action": html.escape(action),
        "css": html.escape(css),
        "username": html.escape(username),
        "error": f'<p class="error" role="alert">{html.escape(error)}</p>' if error else "",
    }
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], _template())


async def read_form(request: Request) -> dict[str, str]:
    """The urlencoded body as a dict; 415 for another type, 413 past ``MAX_FORM_BYTES``."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, "Form too large")
    if media_type != FORM_TYPE and (body or media_type):  # no body at all: an empty form
        raise HTTPException(415, f"Send the form as {FORM_TYPE}")
    try:
        pairs = parse_qsl(
            body.decode("utf-8", "replace"),
            keep_blank_values=True,
            max_num_fields=20,
            errors="replace",
        )
    except ValueError as exc:
        raise HTTPException(422, "Malformed form") from exc
    return dict(pairs)


def _missing(form: dict[str, str], names: tuple[str, ...]) -> JSONResponse | None:
    # The same shape (and "empty counts as missing") as FastAPI's Form(...) fields.
    errors = [
        {"type": "missing", "loc": ["body", name], "msg": "Field required", "input": None}
        for name in names
        if not form.get(name)
    ]
    return JSONResponse({"detail": errors}, status_code=422) if errors else None


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class LoginRoutes:
    """The handlers, sharing the session store, the backend and the throttle."""

    def __init__(
        self,
        task_manager: TaskManager,
        access: SessionAccess,
        backend: TaskAuthBackend,
        *,
        title: str,
        throttle: LoginThrottle,
    ) -> None:
        self.task_manager = task_manager
        self.access = access
        self.store = access.store
        self.backend = backend
        self.title = title
        self.throttle = throttle

    def _base(self, request: Request) -> str:
        return f"{request.scope.get('root_path', '')}{self.access.path}"

    def page(self, request: Request, status: int = 200, **values: str) -> HTMLResponse:
        base = self._base(request)
        content = render_login(
            title=self.title, action=f"{base}/auth/login", css=f"{base}/auth/login.css", **values
        )
        return HTMLResponse(content, status_code=status, headers=PAGE_HEADERS)

    async def show(self, request: Request) -> Response:
        if await self.access.current(request) is not None:
            return RedirectResponse(f"{self._base(request)}/dashboard", status_code=303)
        return self.page(request)

    async def login(self, request: Request) -> Response:
        refuse_cross_site(request)
        form = await read_form(request)
        missing = _missing(form, ("username", "password"))
        if missing is not None:
            return missing
        client = _client(request)
        username, password = form["username"], form["password"]
        wait = await self.throttle.begin(client, username)
        if wait is not None:
            refused = self.page(
                request, 429, error=f"Too many failed logins. Try again in {wait} seconds."
            )
            refused.headers["Retry-After"] = str(wait)
            return refused
        role = None
        if len(username) <= MAX_USERNAME and len(password) <= MAX_PASSWORD:
            role = await authenticate(self.backend, username, password)
        if role is None:
            await self._audit("login_failed", username[:MAX_USERNAME], {"client": client})
            return self.page(request, 401, error=INVALID, username=username[:MAX_USERNAME])
        await self.throttle.succeeded(client, username)
        previous = await self.access.current(request)
        if previous is not None:  # never keep two live sessions in one browser
            await self.store.revoke(previous)
        created = await self.store.create(username, role)
        await self._audit("login", username, {"client": client, "role": role})
        response = RedirectResponse(f"{self._base(request)}/dashboard", status_code=303)
        response.set_cookie(
            COOKIE_NAME,
            created.token,
            max_age=int(self.store.lifetime.total_seconds()),
            path=self._base(request),
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return response

    async def logout(self, request: Request) -> Response:
        refuse_cross_site(request)
        session = await self.access.current(request)
        if session is not None:
            sent = request.headers.get(CSRF_HEADER)
            if sent is None and request.headers.get("content-type", "").startswith(FORM_TYPE):
                sent = (await read_form(request)).get("csrf_token")
            if not hmac.compare_digest((sent or "").encode(), session.csrf_token.encode()):
                raise HTTPException(403, f"Missing or wrong {CSRF_HEADER} header")
            await self.store.revoke(session)
            await self._audit("logout", session.username, {"client": _client(request)})
        response = RedirectResponse(f"{self._base(request)}/auth/login", status_code=303)
        response.delete_cookie(
            COOKIE_NAME,
            path=self._base(request),
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return response

    async def stylesheet(self) -> Response:
        headers = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
        return Response(_stylesheet(), media_type="text/css; charset=utf-8", headers=headers)

    async def _audit(self, action: str, actor: str, detail: dict[str, Any]) -> None:
        # A failed login records the name that was tried: who is being targeted.
        await self.task_manager.record_audit(action, actor=actor, detail=detail)


def create_login_router(
    task_manager: TaskManager,
    *,
    access: SessionAccess,
    backend: TaskAuthBackend,
    title: str,
    throttle: LoginThrottle | None = None,
) -> APIRouter:
    """``GET|POST {path}/auth/login``, ``POST {path}/auth/logout`` and the form's stylesheet."""
    routes = LoginRoutes(
        task_manager,
        access,
        backend,
        title=title,
        throttle=throttle or LoginThrottle(task_manager.repository),
    )
    router = PrefixedRouter(prefix=f"{access.path}/auth", include_in_schema=False)
    router.add_api_route("/login", routes.show, methods=["GET"], response_class=HTMLResponse)
    router.add_api_route("/login", routes.login, methods=["POST"], response_class=HTMLResponse)
    router.add_api_route("/logout", routes.logout, methods=["POST"])
    router.add_api_route("/login.css", routes.stylesheet, methods=["GET"])
    return router


def create_session_router(path: str, access: AdminAccess, *, mode: str) -> APIRouter:
    """``GET {path}/auth/session``: who the dashboard runs as, and the CSRF token to send.

    Mounted under every policy so the dashboard has one contract; the token is
    null where there is no session (the app's own auth, or no auth).
    """
    router = PrefixedRouter(prefix=f"{path}/auth", include_in_schema=False)
    viewer = Depends(access.viewer)

    @router.get("/session")
    async def session_info(request: Request, actor: Actor = viewer) -> Response:
        session = request_session(request)
        body = {
            "username": actor.name,
            "role": actor.role,
            "csrf_token": session.csrf_token if session is not None else None,
            "expires_at": _iso(session.expires_at) if session is not None else None,
            "mode": mode,
        }
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    return router
