"""``TaskAdmin(auth=...)``: logins, server-side sessions, roles, CSRF and the login throttle.

Sessions live in ``taskflow_admin_sessions``, so the tests that touch storage
run on every SQL backend, including two apps (two "instances") on one database.
Cookies are passed explicitly as a ``Cookie`` header: a test then says exactly
which session it presents, and can present it to another app.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.cookiejar import CookieJar, DefaultCookiePolicy
from http.cookies import SimpleCookie
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.routing import APIRoute
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from taskflow import ConfigurationError, TaskAdmin, TaskAuthBackend, TaskManager
from taskflow.db.tables import admin_sessions_table, login_attempts_table
from taskflow.models import utcnow
from taskflow.repository.base import AdminSession
from taskflow.repository.sql import SqlTaskRepository
from taskflow.settings import resolve_database_url
from taskflow.web.access import Actor
from taskflow.web.session_access import page_guard
from taskflow.web.sessions import SessionStore
from taskflow.web.throttle import client_digest, user_digest

COOKIE = "taskflow_session"
ADMIN = ("admin", "correct horse battery staple")
VIEWER = ("watcher", "read-only pass", "viewer")
USERS = [ADMIN, VIEWER]
SQLITE_ONLY = pytest.mark.parametrize("backend_name", ["sqlite"])


@dataclass
class Admin:
    """One app instance with the admin mounted, and a client for it."""

    manager: TaskManager
    app: FastAPI
    admin: TaskAdmin
    client: httpx.AsyncClient

    async def login(self, username: str, password: str) -> httpx.Response:
        return await self.client.post(
            "/tasks/auth/login", data={"username": username, "password": password}
        )

    async def session_cookie(self, username: str = ADMIN[0], password: str = ADMIN[1]) -> str:
        response = await self.login(username, password)
        assert response.status_code == 303, response.text
        return cookie_value(response)

    async def csrf(self, cookie: str) -> str:
        response = await self.client.get("/tasks/auth/session", headers=with_cookie(cookie))
        assert response.status_code == 200, response.text
        token: str = response.json()["csrf_token"]
        return token

    @property
    def store(self) -> SessionStore:
        store: SessionStore = self.admin.access.store  # type: ignore[attr-defined]
        return store


def with_cookie(cookie: str, **headers: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={cookie}", **headers}


def session_morsel(response: httpx.Response) -> Any:
    for header in response.headers.get_list("set-cookie"):
        parsed: SimpleCookie = SimpleCookie()
        parsed.load(header)
        if COOKIE in parsed:
            return parsed[COOKIE]
    raise AssertionError(f"no {COOKIE} cookie in {response.headers.get_list('set-cookie')}")


def cookie_value(response: httpx.Response) -> str:
    value: str = session_morsel(response).value
    return value


@asynccontextmanager
async def running_admin(
    database_url: str,
    *,
    auth: Any = USERS,
    base_url: str = "http://test",
    client: tuple[str, int] = ("127.0.0.1", 123),
    **options: Any,
) -> AsyncIterator[Admin]:
    manager = TaskManager(database_url=database_url, shutdown_grace=1.0)
    app = FastAPI()
    admin = TaskAdmin(app, manager, auth=auth, **options)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=client)
        # A jar that keeps nothing: each request carries exactly the cookie a test gives it.
        jar = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
        async with httpx.AsyncClient(transport=transport, base_url=base_url, cookies=jar) as http:
            yield Admin(manager, app, admin, http)


@pytest.fixture
async def site(database_url: str) -> AsyncIterator[Admin]:
    async with running_admin(database_url) as admin:
        yield admin


async def attempt_rows(database_url: str) -> list[dict[str, Any]]:
    engine = create_async_engine(resolve_database_url(database_url).url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(login_attempts_table))
            return [dict(row) for row in rows.mappings()]
    finally:
        await engine.dispose()


async def session_rows(database_url: str) -> list[dict[str, Any]]:
    engine = create_async_engine(resolve_database_url(database_url).url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(admin_sessions_table))
            return [dict(row._mapping) for row in rows]
    finally:
        await engine.dispose()


def concrete(path: str) -> str:
    """A route path with every ``{param}`` filled in."""
    return path.replace("{task_id}", "some-task").replace("{name}", "some-schedule")


def flat_routes(routes: list[Any]) -> Iterator[Any]:
    """Every route, including those of included routers (FastAPI may keep those nested)."""
    for route in routes:
        nested = getattr(route, "original_router", None)
        if nested is not None:
            yield from flat_routes(nested.routes)
        else:
            yield route


def admin_routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path) of every route under /tasks, login form and public assets excepted."""
    public = ("/tasks/auth/login", "/tasks/auth/login.css")
    for route in flat_routes(app.routes):
        if not isinstance(route, APIRoute) or not route.path.startswith("/tasks"):
            continue
        if route.path in public or route.path.startswith("/tasks/dashboard/static"):
            continue
        if route.path in ("/tasks/auth/logout", "/tasks/dashboard"):
            continue  # their own tests: logout and the page answer with redirects
        for method in sorted(route.methods):
            yield method, concrete(route.path)


# -- logging in -------------------------------------------------------------------------


async def test_login_sets_a_strict_session_cookie_and_stores_only_a_digest(
    site: Admin, database_url: str
) -> None:
    response = await site.login(*ADMIN)
    assert response.status_code == 303
    assert response.headers["location"] == "/tasks/dashboard"
    morsel = session_morsel(response)
    assert morsel["httponly"] is True
    assert morsel["samesite"].lower() == "strict"
    assert morsel["path"] == "/tasks"
    assert morsel["max-age"] == str(8 * 60 * 60)
    assert not morsel["secure"]  # plain http

    token = morsel.value
    rows = await session_rows(database_url)
    assert len(rows) == 1
    row = rows[0]
    assert row["username"] == "admin" and row["role"] == "admin" and row["revoked_at"] is None
    assert row["id"] == hashlib.sha256(f"session:{token}".encode()).hexdigest()
    assert token not in {str(value) for value in row.values()}
    assert len(row["csrf_token"]) == 64 and row["csrf_token"] != row["id"]

    listed = await site.client.get("/tasks", headers=with_cookie(token))
    assert listed.status_code == 200 and listed.json() == []


@SQLITE_ONLY
async def test_cookie_is_secure_over_https(database_url: str) -> None:
    async with running_admin(database_url, base_url="https://test", token_expiry=600) as site:
        response = await site.login(*ADMIN)
        assert response.status_code == 303
        morsel = session_morsel(response)
        assert morsel["secure"] is True
        assert morsel["max-age"] == "600"


@SQLITE_ONLY
async def test_wrong_password_and_unknown_user_look_the_same(site: Admin) -> None:
    wrong = await site.login("admin", "not it")
    unknown = await site.login("nobody", ADMIN[1])
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("text/html")
        assert "Invalid username or password." in response.text
        assert COOKIE not in response.headers.get("set-cookie", "")
    assert wrong.text.replace('value="admin"', "") == unknown.text.replace('value="nobody"', "")


@SQLITE_ONLY
@pytest.mark.parametrize(
    "form", [{}, {"username": "admin"}, {"password": "x"}, {"username": "", "password": "x"}]
)
async def test_missing_fields_are_422(site: Admin, form: dict[str, str]) -> None:
    response = await site.client.post("/tasks/auth/login", data=form)
    assert response.status_code == 422
    missing = {tuple(error["loc"]) for error in response.json()["detail"]}
    expected = {("body", f) for f in ("username", "password") if not form.get(f)}
    assert missing == expected


@SQLITE_ONLY
async def test_login_page_is_a_template_without_scripts(site: Admin) -> None:
    page = await site.client.get("/tasks/auth/login")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert 'action="/tasks/auth/login"' in page.text
    assert 'href="/tasks/auth/login.css"' in page.text
    lowered = page.text.lower()
    assert "<script" not in lowered and " onclick" not in lowered and " onsubmit" not in lowered
    assert "http://" not in lowered and "https://" not in lowered  # no CDN
    css = await site.client.get("/tasks/auth/login.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "body" in css.text

    cookie = await site.session_cookie()
    again = await site.client.get("/tasks/auth/login", headers=with_cookie(cookie))
    assert again.status_code == 303 and again.headers["location"] == "/tasks/dashboard"


@SQLITE_ONLY
async def test_login_escapes_the_echoed_user_name(site: Admin) -> None:
    response = await site.login('"><img src=x>', "nope")
    assert response.status_code == 401
    assert "<img" not in response.text and "&quot;&gt;&lt;img src=x&gt;" in response.text


@SQLITE_ONLY
async def test_login_from_another_site_is_refused(site: Admin, database_url: str) -> None:
    response = await site.client.post(
        "/tasks/auth/login",
        data={"username": ADMIN[0], "password": ADMIN[1]},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert await session_rows(database_url) == []


@SQLITE_ONLY
async def test_a_new_login_revokes_the_session_the_browser_had(site: Admin) -> None:
    first = await site.session_cookie()
    response = await site.client.post(
        "/tasks/auth/login",
        data={"username": ADMIN[0], "password": ADMIN[1]},
        headers=with_cookie(first),
    )
    assert response.status_code == 303
    second = cookie_value(response)
    assert second != first
    assert (await site.client.get("/tasks", headers=with_cookie(first))).status_code == 401
    assert (await site.client.get("/tasks", headers=with_cookie(second))).status_code == 200


# -- what needs a session -----------------------------------------------------------------


async def test_every_admin_route_is_401_without_a_session(site: Admin) -> None:
    checked = set()
    for method, path in admin_routes(site.app):
        for cookie in (None, "forged-" + "x" * 36, "A" * 43):
            headers = with_cookie(cookie) if cookie else {}
            response = await site.client.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, response.text)
            assert response.json() == {"detail": "Unauthorized"}, (method, path)
        checked.add((method, path))
    # The guard is not vacuous: the API, the schedules and the session endpoint were all hit.
    assert {
        ("GET", "/tasks"),
        ("GET", "/tasks/metrics"),
        ("GET", "/tasks/some-task"),
        ("POST", "/tasks/some-task/cancel"),
        ("DELETE", "/tasks/history"),
        ("GET", "/tasks/schedules"),
        ("POST", "/tasks/schedules/some-schedule/pause"),
        ("POST", "/tasks/schedules/some-schedule/resume"),
        ("GET", "/tasks/auth/session"),
    } <= checked


async def test_viewer_reads_everything_but_every_change_is_403(site: Admin) -> None:
    cookie = await site.session_cookie(VIEWER[0], VIEWER[1])
    csrf = await site.csrf(cookie)
    headers = with_cookie(cookie, **{"X-CSRF-Token": csrf})
    session = await site.client.get("/tasks/auth/session", headers=headers)
    assert session.json()["role"] == "viewer"
    changes = 0
    for method, path in admin_routes(site.app):
        if path.endswith("/stream"):
            continue  # an endless response; its guard is the viewer's, checked above
        response = await site.client.request(method, path, headers=headers)
        if method == "GET":
            assert response.status_code != 401 and response.status_code != 403, (path, response)
        else:
            changes += 1
            assert response.status_code == 403, (method, path, response.text)
            assert "read-only" in response.json()["detail"]
    assert changes >= 4
    assert (await site.client.get("/tasks/metrics", headers=headers)).status_code == 200


async def test_changes_need_the_csrf_token(site: Admin) -> None:
    cookie = await site.session_cookie()
    csrf = await site.csrf(cookie)
    path = "/tasks/history?value=1&unit=day"
    missing = await site.client.delete(path, headers=with_cookie(cookie))
    wrong = await site.client.delete(
        path, headers=with_cookie(cookie, **{"X-CSRF-Token": "0" * 64})
    )
    other_session = await site.csrf(await site.session_cookie())
    foreign = await site.client.delete(
        path, headers=with_cookie(cookie, **{"X-CSRF-Token": other_session})
    )
    for response in (missing, wrong, foreign):
        assert response.status_code == 403, [r.status_code for r in (missing, wrong, foreign)]
        assert "X-CSRF-Token" in response.json()["detail"]
    ok = await site.client.delete(path, headers=with_cookie(cookie, **{"X-CSRF-Token": csrf}))
    assert ok.status_code == 200 and ok.json() == {"deleted": 0}


@SQLITE_ONLY
@pytest.mark.parametrize(
    "browser_headers",
    [{"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}],
    ids=["origin", "sec-fetch-site"],
)
async def test_cross_site_changes_are_403_even_with_the_token(
    site: Admin, browser_headers: dict[str, str]
) -> None:
    cookie = await site.session_cookie()
    csrf = await site.csrf(cookie)
    headers = with_cookie(cookie, **{"X-CSRF-Token": csrf}, **browser_headers)
    response = await site.client.delete("/tasks/history?value=1", headers=headers)
    assert response.status_code == 403 and "Cross-site" in response.json()["detail"]
    same_origin = with_cookie(cookie, **{"X-CSRF-Token": csrf, "Origin": "http://test"})
    assert (await site.client.delete("/tasks/history?value=1", headers=same_origin)).is_success


async def test_session_endpoint_contract(site: Admin) -> None:
    assert (await site.client.get("/tasks/auth/session")).status_code == 401
    cookie = await site.session_cookie()
    response = await site.client.get("/tasks/auth/session", headers=with_cookie(cookie))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"username", "role", "csrf_token", "expires_at", "mode"}
    assert body["username"] == "admin" and body["role"] == "admin" and body["mode"] == "session"
    assert len(body["csrf_token"]) == 64
    expires = datetime.fromisoformat(body["expires_at"])
    assert expires.utcoffset() == timedelta(0)
    assert timedelta(hours=7, minutes=59) < expires - utcnow() <= timedelta(hours=8)


@SQLITE_ONLY
async def test_pages_redirect_to_the_login_form(site: Admin) -> None:
    guard = Depends(page_guard(site.admin.access))

    @site.app.get("/tasks/custom-page")
    async def custom_page(actor: Actor = guard) -> dict[str, str]:
        return {"user": actor.name}

    # Registered after the task router: move it in front of {path}/{task_id}.
    site.app.router.routes.insert(0, site.app.router.routes.pop())
    anonymous = await site.client.get("/tasks/custom-page")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/tasks/auth/login"
    cookie = await site.session_cookie()
    allowed = await site.client.get("/tasks/custom-page", headers=with_cookie(cookie))
    assert allowed.status_code == 200 and allowed.json() == {"user": "admin"}

    dashboard = await site.client.get("/tasks/dashboard")
    assert dashboard.status_code in (302, 303, 307)
    assert dashboard.headers["location"].endswith("/tasks/auth/login")


# -- logging out, expiry, many instances ---------------------------------------------------


async def test_logout_revokes_the_session_on_every_instance(database_url: str) -> None:
    async with running_admin(database_url) as a, running_admin(database_url) as b:
        b.store.cache_seconds = 0.2
        cookie = await a.session_cookie()
        unseen_by_b = await a.session_cookie()
        assert (await a.client.get("/tasks", headers=with_cookie(cookie))).status_code == 200
        assert (await b.client.get("/tasks", headers=with_cookie(cookie))).status_code == 200

        for token in (cookie, unseen_by_b):
            csrf = await a.csrf(token)
            response = await a.client.post(
                "/tasks/auth/logout", headers=with_cookie(token, **{"X-CSRF-Token": csrf})
            )
            assert response.status_code == 303
            assert response.headers["location"] == "/tasks/auth/login"
            deleted = session_morsel(response)
            assert deleted.value == "" and deleted["max-age"] == "0"
            assert deleted["path"] == "/tasks"

        # The revoking instance refuses at once, another as soon as its short cache lapses.
        assert (await a.client.get("/tasks", headers=with_cookie(cookie))).status_code == 401
        assert (await b.client.get("/tasks", headers=with_cookie(unseen_by_b))).status_code == 401
        await asyncio.sleep(0.25)
        assert (await b.client.get("/tasks", headers=with_cookie(cookie))).status_code == 401
        rows = await session_rows(database_url)
        assert len(rows) == 2 and all(row["revoked_at"] is not None for row in rows)


async def test_a_session_made_on_one_instance_works_on_another(database_url: str) -> None:
    key = "k" * 40
    async with (
        running_admin(database_url, secret_key=key) as a,
        running_admin(database_url, secret_key=key) as b,
        running_admin(database_url, secret_key="another key entirely, also 32+ chars") as c,
    ):
        cookie = await a.session_cookie()
        csrf = await a.csrf(cookie)
        assert await b.csrf(cookie) == csrf
        response = await b.client.delete(
            "/tasks/history?value=1", headers=with_cookie(cookie, **{"X-CSRF-Token": csrf})
        )
        assert response.status_code == 200
        # The stored id is keyed: an instance with another key cannot match the row.
        assert (await c.client.get("/tasks", headers=with_cookie(cookie))).status_code == 401
        rows = await session_rows(database_url)
        assert rows[0]["id"] != hashlib.sha256(f"session:{cookie}".encode()).hexdigest()


@SQLITE_ONLY
async def test_sessions_end_when_the_user_leaves_auth_or_changes_role(database_url: str) -> None:
    before = [ADMIN, ("bob", "pw-b"), ("cid", "pw-c")]
    after = [ADMIN, ("cid", "pw-c", "viewer")]
    async with (
        running_admin(database_url, auth=before) as old,
        running_admin(database_url, auth=after) as new,
    ):
        admin, bob, cid = (
            await old.session_cookie(*ADMIN),
            await old.session_cookie("bob", "pw-b"),
            await old.session_cookie("cid", "pw-c"),
        )
        for cookie in (admin, bob, cid):
            assert (await old.client.get("/tasks", headers=with_cookie(cookie))).status_code == 200
        assert (await new.client.get("/tasks", headers=with_cookie(admin))).status_code == 200
        assert (await new.client.get("/tasks", headers=with_cookie(bob))).status_code == 401
        assert (await new.client.get("/tasks", headers=with_cookie(cid))).status_code == 401


@SQLITE_ONLY
async def test_get_logout_is_not_allowed_and_logs_nobody_out(site: Admin) -> None:
    cookie = await site.session_cookie()
    response = await site.client.get("/tasks/auth/logout", headers=with_cookie(cookie))
    assert response.status_code == 405
    assert (await site.client.get("/tasks", headers=with_cookie(cookie))).status_code == 200


@SQLITE_ONLY
async def test_logout_needs_the_csrf_token(site: Admin) -> None:
    cookie = await site.session_cookie()
    csrf = await site.csrf(cookie)
    refused = await site.client.post("/tasks/auth/logout", headers=with_cookie(cookie))
    assert refused.status_code == 403
    cross = await site.client.post(
        "/tasks/auth/logout",
        headers=with_cookie(cookie, **{"X-CSRF-Token": csrf, "Origin": "https://evil.example"}),
    )
    assert cross.status_code == 403
    assert (await site.client.get("/tasks", headers=with_cookie(cookie))).status_code == 200
    # A plain HTML form sends the token as a field instead of a header.
    form = await site.client.post(
        "/tasks/auth/logout", data={"csrf_token": csrf}, headers=with_cookie(cookie)
    )
    assert form.status_code == 303
    assert (await site.client.get("/tasks", headers=with_cookie(cookie))).status_code == 401


async def test_expired_session_is_rejected_and_purged(database_url: str) -> None:
    async with running_admin(database_url, token_expiry=1) as site:
        cookie = await site.session_cookie()
        assert (await site.client.get("/tasks", headers=with_cookie(cookie))).status_code == 200
        rows = await session_rows(database_url)
        assert rows[0]["expires_at"] - rows[0]["created_at"] == timedelta(seconds=1)
        await asyncio.sleep(1.1)
        # Expired although still in the in-process cache.
        assert (await site.client.get("/tasks", headers=with_cookie(cookie))).status_code == 401
        assert await site.manager.repository.purge_admin_sessions(now=utcnow()) == 1
        assert await session_rows(database_url) == []


async def test_session_storage_on_the_repository(engine: AsyncEngine) -> None:
    # The fixture's engine fails the test if any of these leaves a connection checked out.
    repository = SqlTaskRepository(engine)
    try:
        now = utcnow()
        live, expired = (
            AdminSession(
                session_id=name * 64,
                username="ann",
                role="viewer",
                csrf_token="c" * 64,
                created_at=now - timedelta(hours=1),
                expires_at=now + lifetime,
            )
            for name, lifetime in (("a", timedelta(hours=1)), ("b", -timedelta(seconds=1)))
        )
        await repository.create_admin_session(live)
        await repository.create_admin_session(expired)
        assert await repository.get_admin_session("a" * 64, now=now) == live
        assert await repository.get_admin_session("b" * 64, now=now) is None
        assert await repository.get_admin_session("z" * 64, now=now) is None
        assert await repository.revoke_admin_session("a" * 64, now=now) is True
        assert await repository.revoke_admin_session("a" * 64, now=now) is False
        assert await repository.get_admin_session("a" * 64, now=now) is None
        assert await repository.purge_admin_sessions(now=now) == 1  # only the expired one
        assert await repository.purge_admin_sessions(now=now + timedelta(hours=2)) == 1
    finally:
        await repository.release()


# -- the login throttle ---------------------------------------------------------------------


@SQLITE_ONLY
async def test_repeated_failures_are_throttled_per_client(database_url: str) -> None:
    async with (
        running_admin(database_url) as site,
        running_admin(database_url, client=("10.0.0.9", 5000)) as elsewhere,
    ):
        for _ in range(4):
            assert (await site.login("admin", "guess")).status_code == 401
        assert (await site.login(*ADMIN)).status_code == 303  # a success resets the count
        for _ in range(5):
            assert (await site.login("admin", "guess")).status_code == 401
        throttled = await site.login(*ADMIN)  # even the right password now waits
        assert throttled.status_code == 429
        assert 1 <= int(throttled.headers["retry-after"]) <= 60
        assert "Too many failed logins" in throttled.text
        assert (await elsewhere.login(*ADMIN)).status_code == 303


async def test_a_login_as_one_user_does_not_forgive_guesses_at_another(
    database_url: str,
) -> None:
    """A viewer's own login must not reset the count of guesses at the admin's password."""
    async with running_admin(database_url) as site:
        for _ in range(5):
            assert (await site.login("admin", "guess")).status_code == 401
            assert (await site.login(*VIEWER[:2])).status_code == 303
        refused = await site.login("admin", "guess")
        assert refused.status_code == 429
        assert (await site.login(*ADMIN)).status_code == 429  # the right password waits too
        # The viewer's own account is not locked by the guesses at another.
        assert (await site.login(*VIEWER[:2])).status_code == 303
        keys = [row["client"] for row in await attempt_rows(database_url)]
        assert keys == [client_digest("127.0.0.1") + user_digest("admin")] * 5


async def test_guesses_spread_over_many_names_are_throttled_per_client(
    database_url: str,
) -> None:
    async with (
        running_admin(database_url) as site,
        running_admin(database_url, client=("10.0.0.9", 5000)) as elsewhere,
    ):
        for n in range(20):
            assert (await site.login(f"user{n}", "guess")).status_code == 401
        assert (await site.login("user-twenty-one", "guess")).status_code == 429
        assert (await site.login(*ADMIN)).status_code == 429
        assert (await elsewhere.login(*ADMIN)).status_code == 303
        # A success clears only the account it is for: the client stays throttled.
        assert len(await attempt_rows(database_url)) == 20


async def test_concurrent_guesses_cannot_outrun_the_throttle(database_url: str) -> None:
    class SlowBackend(TaskAuthBackend):
        async def authenticate_user(self, username: str, password: str) -> bool:
            await asyncio.sleep(0.05)
            return False

    async with running_admin(database_url, auth=SlowBackend()) as site:
        results = await asyncio.gather(*(site.login("admin", f"guess{i}") for i in range(20)))
        codes = sorted(response.status_code for response in results)
        assert codes == [401] * 5 + [429] * 15


async def test_the_throttle_counts_failures_made_on_every_instance(database_url: str) -> None:
    async with (
        running_admin(database_url) as first,
        running_admin(database_url) as second,
        running_admin(database_url, client=("10.0.0.9", 5000)) as other_client,
    ):
        for _ in range(3):
            assert (await first.login("admin", "guess")).status_code == 401
        for _ in range(2):
            assert (await second.login("admin", "guess")).status_code == 401
        # Five failures in all: both instances now refuse this client, right password or not.
        assert (await first.login(*ADMIN)).status_code == 429
        assert (await second.login(*ADMIN)).status_code == 429
        assert (await other_client.login(*ADMIN)).status_code == 303
        # Stored as a digest of the address, never the address itself.
        keys = {row["client"] for row in await attempt_rows(database_url)}
        assert keys == {client_digest("127.0.0.1") + user_digest("admin")}
        assert not any("127.0.0.1" in key for key in keys)


async def test_a_login_on_one_instance_clears_the_count_on_the_others(database_url: str) -> None:
    async with (
        running_admin(database_url) as first,
        running_admin(database_url) as second,
    ):
        for _ in range(4):
            assert (await first.login("admin", "guess")).status_code == 401
        assert (await second.login(*ADMIN)).status_code == 303
        assert await attempt_rows(database_url) == []
        for _ in range(5):
            assert (await first.login("admin", "guess")).status_code == 401
        assert (await first.login("admin", "guess")).status_code == 429


async def test_refused_attempts_do_not_extend_the_wait(database_url: str) -> None:
    async with running_admin(database_url) as site:
        for _ in range(5):
            assert (await site.login("admin", "guess")).status_code == 401
        first_wait = int((await site.login(*ADMIN)).headers["retry-after"])
        for _ in range(5):
            assert (await site.login(*ADMIN)).status_code == 429
        # The five failures are still the only rows: refusals are not stored.
        assert len(await attempt_rows(database_url)) == 5
        assert int((await site.login(*ADMIN)).headers["retry-after"]) <= first_wait


async def test_old_attempts_stop_counting_and_are_purged(database_url: str) -> None:
    async with running_admin(database_url) as site:
        repository = site.manager.repository
        now = utcnow()
        someone, name = client_digest("someone"), user_digest("admin")
        for _ in range(5):
            await repository.begin_login_attempt(
                someone, name, now=now - timedelta(seconds=90), since=now - timedelta(seconds=150)
            )
        fresh = await repository.begin_login_attempt(
            someone, name, now=now, since=now - timedelta(seconds=60)
        )
        # The five older than the window do not count.
        assert (fresh.count, fresh.client_count) == (1, 1)
        assert fresh.oldest is not None and fresh.oldest >= now - timedelta(seconds=1)
        assert await repository.purge_login_attempts(before=now - timedelta(seconds=60)) == 5
        assert len(await attempt_rows(database_url)) == 1


# -- credentials and backends ---------------------------------------------------------------


async def test_non_ascii_credentials(database_url: str) -> None:
    async with running_admin(database_url, auth=("jürgen", "pässwörd-🔑-密码")) as site:
        assert (await site.login("jürgen", "pässwörd-🔑-密码")).status_code == 303
        assert (await site.login("jürgen", "passwörd-🔑-密码")).status_code == 401
        assert (await site.login("jurgen", "pässwörd-🔑-密码")).status_code == 401
        rows = await session_rows(database_url)
        assert [row["username"] for row in rows] == ["jürgen"]


@SQLITE_ONLY
async def test_a_list_of_users_each_with_their_own_password(database_url: str) -> None:
    users = [("ann", "ann-pass"), ("bob", "bob-pass"), ("cid", "cid-pass", "viewer")]
    async with running_admin(database_url, auth=users) as site:
        for user in users:
            cookie = await site.session_cookie(user[0], user[1])
            info = (
                await site.client.get("/tasks/auth/session", headers=with_cookie(cookie))
            ).json()
            assert info["username"] == user[0]
            assert info["role"] == (user[2] if len(user) == 3 else "admin")
        assert (await site.login("ann", "bob-pass")).status_code == 401
        assert (await site.login("bob", "ann-pass")).status_code == 401


@SQLITE_ONLY
@pytest.mark.parametrize("style", ["sync", "async"])
async def test_custom_backend_grants_roles(database_url: str, style: str) -> None:
    calls: list[tuple[str, str]] = []

    def decide(username: str, password: str) -> bool | str:
        calls.append((username, password))
        if password != "open sesame":
            return False
        return {"root": True, "auditor": "viewer", "odd": "superuser"}.get(username, False)

    class SyncBackend(TaskAuthBackend):
        def authenticate_user(self, username: str, password: str) -> bool | str:
            return decide(username, password)

    class AsyncBackend(TaskAuthBackend):
        async def authenticate_user(self, username: str, password: str) -> bool | str:
            await asyncio.sleep(0)
            return decide(username, password)

    backend = SyncBackend() if style == "sync" else AsyncBackend()
    async with running_admin(database_url, auth=backend) as site:
        root = await site.session_cookie("root", "open sesame")
        auditor = await site.session_cookie("auditor", "open sesame")
        root_info = await site.client.get("/tasks/auth/session", headers=with_cookie(root))
        auditor_info = await site.client.get("/tasks/auth/session", headers=with_cookie(auditor))
        assert root_info.json()["role"] == "admin"
        assert auditor_info.json()["role"] == "viewer"
        # An unknown role from the backend fails closed.
        assert (await site.login("odd", "open sesame")).status_code == 401
        assert (await site.login("root", "wrong")).status_code == 401
        assert ("auditor", "open sesame") in calls


@SQLITE_ONLY
@pytest.mark.parametrize("wrapped", [True, False], ids=["Depends", "callable"])
async def test_the_apps_own_dependency(database_url: str, wrapped: bool) -> None:
    def current_user(request: Request) -> str | Actor:
        user = request.headers.get("X-User")
        if user is None:
            raise HTTPException(401, "Who are you?")
        return Actor(user, "viewer") if user.startswith("ro-") else user

    auth = Depends(current_user) if wrapped else current_user
    async with running_admin(database_url, auth=auth) as site:
        assert (await site.client.get("/tasks")).status_code == 401
        assert (await site.client.get("/tasks/schedules")).json() == {"detail": "Who are you?"}
        assert (await site.client.get("/tasks", headers={"X-User": "alice"})).status_code == 200
        # No login form: the app authenticates.
        assert (await site.client.get("/tasks/auth/login")).status_code == 404
        info = await site.client.get("/tasks/auth/session", headers={"X-User": "alice"})
        assert info.json() == {
            "username": "alice",
            "role": "admin",
            "csrf_token": None,
            "expires_at": None,
            "mode": "dependency",
        }
        path = "/tasks/history?value=1"
        ok = await site.client.delete(path, headers={"X-User": "alice"})
        assert ok.status_code == 200
        viewer = await site.client.delete(path, headers={"X-User": "ro-bob"})
        assert viewer.status_code == 403
        cross = await site.client.delete(
            path, headers={"X-User": "alice", "Origin": "https://evil.example"}
        )
        assert cross.status_code == 403
        # Called directly (not through FastAPI) the policy cannot run the app's dependency.
        with pytest.raises(HTTPException) as refused:
            await site.admin.access.viewer(Request({"type": "http", "headers": []}))
        assert refused.value.status_code == 401


# -- configuration ----------------------------------------------------------------------------


class Fixed(TaskAuthBackend):
    def authenticate_user(self, username: str, password: str) -> bool:
        return False


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"auth": ADMIN, "secret_key": "too short"}, ConfigurationError, "32 characters"),
        ({"secret_key": "x" * 31}, ConfigurationError, "32 characters"),
        ({"auth": ADMIN, "token_expiry": 0}, ConfigurationError, "token_expiry"),
        ({"auth": []}, ConfigurationError, "empty list"),
        ({"auth": ("admin", "")}, ConfigurationError, "must not be empty"),
        ({"auth": ("admin", "pw", "root")}, ConfigurationError, "role must be one of"),
        ({"auth": [("a", "1"), ("a", "2")]}, ConfigurationError, "more than once"),
        ({"auth": "admin:pw"}, TypeError, "auth= takes"),
        ({"auth": 42}, TypeError, "auth= takes"),
        ({"auth": ("admin",)}, TypeError, "(user, password)"),
        ({"auth": ("admin", 123)}, TypeError, "strings"),
        ({"auth": Fixed}, TypeError, "instance of Fixed"),
    ],
)
def test_bad_settings_fail_at_construction(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        TaskAdmin(FastAPI(), TaskManager(), **options)
    assert message in str(raised.value)


def test_good_settings_are_accepted() -> None:
    admin = TaskAdmin(FastAPI(), TaskManager(), auth=ADMIN, secret_key="s" * 32)
    assert admin.auth_mode == "session" and admin.token_expiry == 8 * 60 * 60
    assert TaskAdmin(FastAPI(), TaskManager()).auth_mode == "open"


# -- audit ------------------------------------------------------------------------------------


async def test_logins_and_logouts_are_audited(site: Admin) -> None:
    assert (await site.login("admin", "wrong")).status_code == 401
    cookie = await site.session_cookie()
    csrf = await site.csrf(cookie)
    logout = await site.client.post(
        "/tasks/auth/logout", headers=with_cookie(cookie, **{"X-CSRF-Token": csrf})
    )
    assert logout.status_code == 303
    entries = [entry.to_dict() for entry in await site.manager.list_audit()]
    assert [(e["action"], e["actor"]) for e in entries] == [
        ("logout", "admin"),
        ("login", "admin"),
        ("login_failed", "admin"),
    ]
    assert entries[1]["detail"] == {"client": "127.0.0.1", "role": "admin"}
    assert entries[2]["detail"] == {"client": "127.0.0.1"}
    assert all(e["task_id"] is None for e in entries)


@SQLITE_ONLY
async def test_without_auth_the_session_endpoint_says_open(database_url: str) -> None:
    async with running_admin(database_url, auth=None) as site:
        response = await site.client.get("/tasks/auth/session")
        assert response.status_code == 200
        assert response.json() == {
            "username": "anonymous",
            "role": "admin",
            "csrf_token": None,
            "expires_at": None,
            "mode": "open",
        }
        # No login form to go to, and changes still need no token (but the same origin).
        assert (await site.client.get("/tasks/auth/login")).status_code == 404
        assert (await site.client.delete("/tasks/history?value=1")).status_code == 200
