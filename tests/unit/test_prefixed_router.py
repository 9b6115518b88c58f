"""The admin's routers step aside, in one string test, for every path outside their prefix."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import Match

from taskflow import TaskAdmin, TaskManager
from taskflow.web.prefixed_router import PrefixedRouter


def _scope(path: str, root_path: str = "") -> dict[str, object]:
    return {"type": "http", "path": path, "root_path": root_path, "method": "GET"}


def test_a_path_outside_the_prefix_is_turned_away_without_trying_a_route() -> None:
    router = PrefixedRouter(prefix="/tasks")
    tried: list[str] = []

    @router.get("/{task_id}")
    def get_task(task_id: str) -> str:
        return task_id

    original = router.routes[0].matches

    def spy(scope: dict[str, object]) -> tuple[Match, dict[str, object]]:
        tried.append(str(scope["path"]))
        return original(scope)  # type: ignore[arg-type]

    router.routes[0].matches = spy  # type: ignore[method-assign]
    app = FastAPI()
    app.include_router(router)
    included = app.router.routes[-1]
    match, _ = included.matches(_scope("/signup"))  # type: ignore[arg-type]
    assert match == Match.NONE
    assert tried == []


def test_an_empty_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty prefix"):
        PrefixedRouter(prefix="")


async def test_app_routes_declared_after_the_admin_and_admin_routes_both_answer() -> None:
    manager = TaskManager(database_url="sqlite://")
    app = FastAPI()
    TaskAdmin(app, manager)

    @app.get("/signup")
    async def signup() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/api/tasks-report")
    async def report() -> dict[str, str]:
        # Contains "/tasks" without being under it: the admin must still step aside.
        return {"report": "yes"}

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/signup")).json() == {"ok": True}
            assert (await client.get("/api/tasks-report")).json() == {"report": "yes"}
            assert (await client.get("/tasks")).status_code == 200
            assert (await client.get("/tasks/metrics")).status_code == 200
            assert (await client.get("/tasks/no-such-task")).status_code == 404
            assert (await client.get("/elsewhere")).status_code == 404


async def test_the_admin_answers_inside_an_app_mounted_under_a_root_path() -> None:
    manager = TaskManager(database_url="sqlite://")
    inner = FastAPI()
    TaskAdmin(inner, manager)
    outer = FastAPI()
    outer.mount("/api", inner)
    async with inner.router.lifespan_context(inner):
        transport = httpx.ASGITransport(app=outer)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/api/tasks/metrics")
            assert response.status_code == 200
            assert response.json()["total"] == 0


def test_a_prefix_with_a_path_parameter_is_not_used_as_text() -> None:
    router = PrefixedRouter(prefix="/t/{tenant}/tasks")

    @router.get("/metrics")
    def metrics(tenant: str) -> str:
        return tenant

    app = FastAPI()
    app.include_router(router)
    match, _ = app.router.routes[-1].matches(_scope("/t/acme/tasks/metrics"))  # type: ignore[arg-type]
    assert match == Match.FULL
