"""``TaskAdmin(auth=...)``: what needs a session, roles, CSRF tokens and cross-site refusals.

Sessions live in ``taskflow_admin_sessions``, so the tests that touch storage
run on every SQL backend, including two apps (two "instances") on one database.
Cookies are passed explicitly as a ``Cookie`` header: a test then says exactly
which session it presents, and can present it to another app.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute

from taskflow.models import utcnow
from taskflow.web.access import Actor
from taskflow.web.session_access import page_guard
from tests.integration.auth.login_site import SQLITE_ONLY, VIEWER, Admin, with_cookie


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
