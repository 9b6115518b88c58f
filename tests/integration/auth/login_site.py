"""The admin app with logins of the auth tests, its cookies, and raw reads of the session tables."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from http.cookies import SimpleCookie
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from taskflow import TaskAdmin, TaskManager
from taskflow.db.tables import admin_sessions_table
from taskflow.settings import resolve_database_url
from taskflow.web.sessions import SessionStore

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


async def session_rows(database_url: str) -> list[dict[str, Any]]:
    engine = create_async_engine(resolve_database_url(database_url).url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(admin_sessions_table))
            return [dict(row._mapping) for row in rows]
    finally:
        await engine.dispose()
