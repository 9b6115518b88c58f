"""``TaskAdmin(auth=...)``: credentials, custom backends, the app's own dependency.

And settings that are checked when ``TaskAdmin`` is constructed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import Depends, FastAPI, HTTPException, Request

from taskflow import ConfigurationError, TaskAdmin, TaskAuthBackend, TaskManager
from taskflow.web.access import Actor
from tests.integration.auth.login_site import (
    ADMIN,
    SQLITE_ONLY,
    running_admin,
    session_rows,
    with_cookie,
)

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
