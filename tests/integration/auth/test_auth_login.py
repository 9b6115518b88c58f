"""``TaskAdmin(auth=...)``: logging in, and the audit of logins and logouts.

Sessions live in ``taskflow_admin_sessions``, so the tests that touch storage
run on every SQL backend, including two apps (two "instances") on one database.
Cookies are passed explicitly as a ``Cookie`` header: a test then says exactly
which session it presents, and can present it to another app.
"""

from __future__ import annotations

import hashlib

import pytest

from tests.integration.auth.login_site import (
    ADMIN,
    COOKIE,
    SQLITE_ONLY,
    Admin,
    cookie_value,
    running_admin,
    session_morsel,
    session_rows,
    with_cookie,
)

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
