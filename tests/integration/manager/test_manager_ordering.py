"""TaskManager end to end: the tasks of one request run in the order they were added.

On every SQL backend. Each test builds its own app, runs it through its
lifespan with an in-process ASGI client, and checks the outcome twice: through
the task API (``GET /tasks/{id}``) and with plain SQL on ``taskflow_tasks`` /
``taskflow_task_logs`` over a fresh connection, the way users report on it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import BackgroundTasks

from taskflow import ManagedBackgroundTasks
from tests.integration.manager.harness import Harness
from tests.processes import stored_utc


async def test_two_tasks_of_one_request_run_in_order(harness: Harness) -> None:
    manager = harness.manager
    spans: dict[str, list[float]] = {}

    @manager.task()
    async def first_step(key: str) -> None:
        spans[f"{key}-first"] = [time.monotonic()]
        await asyncio.sleep(0.03)
        spans[f"{key}-first"].append(time.monotonic())

    @manager.task()
    def second_step(key: str) -> None:
        spans[f"{key}-second"] = [time.monotonic()]
        time.sleep(0.005)
        spans[f"{key}-second"].append(time.monotonic())

    @harness.app.post("/sync-route")
    def sync_route(background_tasks: BackgroundTasks) -> dict[str, Any]:
        return {
            "first": background_tasks.add_task(first_step, "sync"),
            "second": background_tasks.add_task(second_step, "sync"),
        }

    @harness.app.post("/async-route")
    async def async_route(background_tasks: BackgroundTasks) -> dict[str, Any]:
        return {
            "first": background_tasks.add_task(first_step, "async"),
            "second": background_tasks.add_task(second_step, "async"),
        }

    async with harness.serve() as client:
        by_route = {
            "sync": (await client.post("/sync-route")).json(),
            "async": (await client.post("/async-route")).json(),
        }
        await manager.drain()

    for key, ids in by_route.items():
        assert spans[f"{key}-second"][0] >= spans[f"{key}-first"][1], key
        first_row = await harness.raw.task(ids["first"])
        second_row = await harness.raw.task(ids["second"])
        assert first_row is not None and second_row is not None
        assert first_row["status"] == second_row["status"] == "success"
        first_end = stored_utc(first_row["finished_at"])
        second_start = stored_utc(second_row["started_at"])
        assert first_end is not None and second_start is not None
        assert second_start >= first_end, key


async def test_managed_and_plain_tasks_of_one_request_run_in_order(database_url: str) -> None:
    """``ManagedBackgroundTasks`` promises FastAPI's order across plain and managed tasks."""
    harness = Harness(database_url, auto_install=False)
    manager = harness.manager
    spans: dict[str, list[float]] = {}

    @manager.task()
    async def managed_first() -> None:
        spans["managed"] = [time.monotonic()]
        await asyncio.sleep(0.03)
        spans["managed"].append(time.monotonic())

    def plain_second() -> None:
        spans["plain"] = [time.monotonic()]

    @harness.app.post("/mixed")
    async def mixed(background_tasks: BackgroundTasks) -> dict[str, Any]:
        tasks = ManagedBackgroundTasks(manager, background_tasks)  # shares the request's list
        task_id = tasks.add_task(managed_first)
        background_tasks.add_task(plain_second)
        return {"task_id": task_id}

    try:
        async with harness.serve() as client:
            await client.post("/mixed")
            await manager.drain()
        assert "plain" in spans and len(spans["managed"]) == 2
        assert spans["plain"][0] >= spans["managed"][1], (
            "the plain task added second started before the managed task added first finished"
        )
    finally:
        await harness.raw.engine.dispose()
