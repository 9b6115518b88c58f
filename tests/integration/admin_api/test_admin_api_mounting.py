"""How ``TaskAdmin`` is mounted: hidden from OpenAPI, guarded by the app's dependencies, and the
warning an unguarded admin logs at startup.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException

from taskflow import TaskAdmin, TaskManager

pytestmark = pytest.mark.parametrize("backend_name", ["sqlite"], indirect=True)

ADMIN_API = [
    ("GET", "/tasks"),
    ("GET", "/tasks/metrics"),
    ("DELETE", "/tasks/history?value=1&unit=day"),
    ("POST", "/tasks/retry-failed"),
    ("GET", "/tasks/dashboard"),
]


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        yield client


def open_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "TaskAdmin at /tasks has no auth" in r.getMessage()]


async def test_include_in_schema_false_hides_every_admin_route(database_url: str) -> None:
    app = FastAPI()

    @app.get("/mine")
    def mine() -> dict[str, str]:
        return {}

    admin = TaskAdmin(app, TaskManager(database_url=database_url), include_in_schema=False)
    assert isinstance(admin.router, APIRouter)
    async with serve(app) as client:
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert list(paths) == ["/mine"]
        assert (await client.get("/tasks/metrics")).status_code == 200  # hidden, not gone


async def test_listed_in_the_schema_by_default(database_url: str) -> None:
    app = FastAPI()
    TaskAdmin(app, TaskManager(database_url=database_url))
    async with serve(app) as client:
        paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/tasks/metrics" in paths and "/tasks/history" in paths


async def test_a_dependency_that_refuses_blocks_every_admin_route(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str | None] = []

    def require_staff(x_staff: str | None = Header(default=None)) -> None:
        calls.append(x_staff)
        if x_staff != "yes":
            raise HTTPException(403, "staff only")

    app = FastAPI()
    manager = TaskManager(database_url=database_url)
    TaskAdmin(app, manager, dependencies=[Depends(require_staff)])

    @app.get("/public")
    def public() -> dict[str, Any]:
        return {"ok": True}

    async with serve(app) as client:
        for method, url in ADMIN_API:
            answer = await client.request(method, url)
            assert answer.status_code == 403, (method, url, answer.text)
            assert answer.json() == {"detail": "staff only"}
        assert (await client.get("/public")).status_code == 200
        staff = {"x-staff": "yes"}
        assert (await client.get("/tasks/metrics", headers=staff)).status_code == 200
        deleted = await client.delete("/tasks/history?value=1&unit=day", headers=staff)
        assert deleted.status_code == 200, deleted.text
    assert calls.count("yes") == 2 and calls.count(None) == len(ADMIN_API)
    assert open_warnings(caplog) == []  # guarded by the dependency: no warning


async def test_an_unguarded_admin_warns_once_at_startup(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="taskflow")
    app = FastAPI()
    TaskAdmin(app, TaskManager(database_url=database_url))
    assert open_warnings(caplog) == []  # not at import: at startup
    async with serve(app) as client:
        for method, url in ADMIN_API:
            await client.request(method, url)
    [warning] = open_warnings(caplog)
    assert warning.levelno == logging.WARNING
    message = warning.getMessage()
    assert "DELETE /tasks/history" in message and "POST /tasks/retry-failed" in message
    assert "auth=" in message and "dependencies=" in message


@pytest.mark.parametrize(
    "guard",
    [
        {"auth": ("admin", "a-long-enough-password")},
        {"auth": lambda: "someone"},
        {"dependencies": [Depends(lambda: None)]},
        {"auth": False},
    ],
    ids=["credentials", "auth-dependency", "dependencies", "open-on-purpose"],
)
async def test_no_warning_when_guarded_or_open_on_purpose(
    database_url: str, caplog: pytest.LogCaptureFixture, guard: dict[str, Any]
) -> None:
    caplog.set_level(logging.WARNING, logger="taskflow")
    app = FastAPI()
    TaskAdmin(app, TaskManager(database_url=database_url), **guard)
    async with serve(app) as client:
        assert (await client.get("/openapi.json")).status_code == 200
    assert open_warnings(caplog) == []
