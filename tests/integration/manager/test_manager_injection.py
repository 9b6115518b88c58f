"""TaskManager end to end: injection patterns, executors and results.

On every SQL backend. Each test builds its own app, runs it through its
lifespan with an in-process ASGI client, and checks the outcome twice: through
the task API (``GET /tasks/{id}``) and with plain SQL on ``taskflow_tasks`` /
``taskflow_task_logs`` over a fresh connection, the way users report on it.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import pytest
from fastapi import BackgroundTasks, Depends, FastAPI

from taskflow import ManagedBackgroundTasks, TaskManager
from tests.integration.manager.harness import Harness, from_json
from tests.processes import stored_utc


def _add_routes(app: FastAPI, manager: TaskManager, pattern: str, tasks: dict[str, Any]) -> None:
    """POST /sync (a ``def`` route) and /async (an ``async def`` route) for one pattern.

    The sync route adds the sync task and the async route the async one, except for
    the ``managed`` pattern, which crosses them over.
    """
    sync_task, async_task = tasks["sync"], tasks["async"]
    injected: dict[str, type] = tasks["injected"]
    for_sync, for_async = (
        (async_task, sync_task) if pattern == "managed" else (sync_task, async_task)
    )

    if pattern == "plain":

        @app.post("/sync")
        def plain_sync(background_tasks: BackgroundTasks) -> dict[str, Any]:
            injected["sync"] = type(background_tasks)
            return {"task_id": background_tasks.add_task(for_sync, "sync")}

        @app.post("/async")
        async def plain_async(background_tasks: BackgroundTasks) -> dict[str, Any]:
            injected["async"] = type(background_tasks)
            return {"task_id": background_tasks.add_task(for_async, label="async")}

    elif pattern == "managed":

        @app.post("/sync")
        def managed_sync(background_tasks: ManagedBackgroundTasks) -> dict[str, Any]:
            injected["sync"] = type(background_tasks)
            return {"task_id": background_tasks.add_task(for_sync, "sync")}

        @app.post("/async")
        async def managed_async(background_tasks: ManagedBackgroundTasks) -> dict[str, Any]:
            injected["async"] = type(background_tasks)
            return {"task_id": background_tasks.add_task(for_async, label="async")}

    else:
        via_get_tasks = Depends(manager.get_tasks)
        via_alias = Depends(manager.background_tasks)

        @app.post("/sync")
        def depends_sync(tasks: ManagedBackgroundTasks = via_get_tasks) -> dict[str, Any]:
            injected["sync"] = type(tasks)
            return {"task_id": tasks.add_task(for_sync, "sync")}

        @app.post("/async")
        async def depends_async(tasks: ManagedBackgroundTasks = via_alias) -> dict[str, Any]:
            injected["async"] = type(tasks)
            return {"task_id": tasks.add_task(for_async, label="async")}


@pytest.mark.parametrize("pattern", ["plain", "managed", "depends"])
async def test_injection_pattern_with_sync_and_async_routes(harness: Harness, pattern: str) -> None:
    """``BackgroundTasks`` (installed), ``ManagedBackgroundTasks``, ``Depends(get_tasks)``."""
    app, manager = harness.app, harness.manager

    @manager.task()
    def sync_task(label: str) -> dict[str, str]:
        time.sleep(0.002)
        return {"label": label, "ran": "thread"}

    @manager.task()
    async def async_task(label: str) -> dict[str, str]:
        await asyncio.sleep(0.002)
        return {"label": label, "ran": "loop"}

    injected: dict[str, type] = {}
    _add_routes(
        app, manager, pattern, {"sync": sync_task, "async": async_task, "injected": injected}
    )
    crossed = pattern == "managed"
    expected = {  # route -> (func_name, executor, stored args, stored kwargs)
        "sync": (
            "async_task" if crossed else "sync_task",
            "async" if crossed else "thread",
            ["sync"],
            {},
        ),
        "async": (
            "sync_task" if crossed else "async_task",
            "thread" if crossed else "async",
            [],
            {"label": "async"},
        ),
    }
    ids: dict[str, str] = {}
    async with harness.serve() as client:
        for route in expected:
            response = await client.post(f"/{route}")
            assert response.status_code == 200, (route, response.text)
            ids[route] = response.json()["task_id"]
            assert isinstance(ids[route], str) and len(ids[route]) == 36, (route, ids[route])
        await manager.drain()

        for route, (func_name, executor, _, _) in expected.items():
            assert issubclass(injected[route], ManagedBackgroundTasks), route
            ran = "thread" if executor == "thread" else "loop"
            data = await harness.api_task(client, ids[route])
            assert data["status"] == "success", (route, data)
            assert data["func_name"] == func_name
            assert data["executor"] == executor
            assert data["retries_used"] == 0
            assert data["error"] is None
            assert data["result"] == {"label": route, "ran": ran}
            assert data["duration"] is not None and data["duration"] >= 0.0015
            start = datetime.fromisoformat(data["start_time"])
            end = datetime.fromisoformat(data["end_time"])
            assert datetime.fromisoformat(data["created_at"]) <= start <= end

    for route, (func_name, executor, args, kwargs) in expected.items():
        row = await harness.raw.task(ids[route])
        assert row is not None, route
        assert row["status"] == "success"
        assert row["func_name"] == func_name
        assert row["executor"] == executor
        assert row["attempt"] == 0
        assert row["duration_ms"] is not None and row["duration_ms"] >= 1.5
        started, finished = stored_utc(row["started_at"]), stored_utc(row["finished_at"])
        assert started is not None and finished is not None
        assert stored_utc(row["created_at"]) <= started <= finished  # type: ignore[operator]
        ran = "thread" if executor == "thread" else "loop"
        assert from_json(row["result"]) == {"label": route, "ran": ran}
        assert row["owner"] is None and row["lease_expires_at"] is None
        assert row["payload_format"] == "json"
        assert (from_json(row["args"]), from_json(row["kwargs"])) == (args, kwargs)


async def test_depends_get_tasks_without_install(database_url: str) -> None:
    harness = Harness(database_url, auto_install=False)
    manager, app = harness.manager, harness.app
    seen: dict[str, Any] = {}

    @manager.task()
    def sync_task(n: int) -> int:
        return n * 2

    get_tasks = Depends(manager.get_tasks)

    @app.post("/signup")
    def signup(
        background_tasks: BackgroundTasks, tasks: ManagedBackgroundTasks = get_tasks
    ) -> dict[str, Any]:
        seen["plain"] = type(background_tasks)
        seen["managed"] = type(tasks)
        return {"task_id": tasks.add_task(sync_task, 21)}

    try:
        async with harness.serve() as client:
            response = await client.post("/signup")
            task_id = response.json()["task_id"]
            await manager.drain()
            data = await harness.api_task(client, task_id)
        assert seen["plain"] is BackgroundTasks
        assert issubclass(seen["managed"], ManagedBackgroundTasks)
        assert data["status"] == "success" and data["result"] == 42
        row = await harness.raw.task(task_id)
        assert row is not None and row["status"] == "success"
        assert from_json(row["result"]) == 42
    finally:
        await harness.raw.engine.dispose()


async def test_non_json_result_is_not_stored(harness: Harness) -> None:
    @harness.manager.task()
    async def returns_tuple() -> tuple[int, int]:
        return (1, 2)

    async with harness.serve():
        task_id = await harness.manager.enqueue(returns_tuple)
    row = await harness.raw.task(task_id)
    assert row is not None
    assert row["status"] == "success"
    assert row["result"] is None
