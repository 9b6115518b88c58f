"""``TaskAdmin(auth=...)``: logging out, expiry, and sessions shared by many instances.

Sessions live in ``taskflow_admin_sessions``, so the tests that touch storage
run on every SQL backend, including two apps (two "instances") on one database.
Cookies are passed explicitly as a ``Cookie`` header: a test then says exactly
which session it presents, and can present it to another app.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from taskflow.models import utcnow
from taskflow.repository.base import AdminSession
from taskflow.repository.sql import SqlTaskRepository
from tests.integration.auth.login_site import (
    ADMIN,
    SQLITE_ONLY,
    Admin,
    running_admin,
    session_morsel,
    session_rows,
    with_cookie,
)


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
