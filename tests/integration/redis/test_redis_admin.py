"""The admin API and history retention on Redis, through ``TaskAdmin`` and httpx."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI

from taskflow import TaskAdmin, TaskQuery, TaskStatus
from tests.integration.redis.redis_app import (
    FAIL_TIMES,
    STARTED,
    STOPPED,
    TERMINAL,
    Deployment,
    always_fails,
    beat,
    flaky,
    hold,
    remember,
    serving,
)
from tests.polling import eventually, wait_for_status

# -- the admin API on Redis -----------------------------------------------------------


async def test_admin_api_lists_filters_pages_retries_cancels_and_audits(
    deployment: Deployment,
) -> None:
    manager = deployment.manager()
    manager.schedule(every=3600, name="hourly")(beat)
    app = FastAPI()
    TaskAdmin(app, manager)
    async with serving(app) as client:
        done = [await manager.enqueue(remember, f"r{n}") for n in range(5)]
        FAIL_TIMES.update({"f1": 3, "f2": 3})
        failed = [await manager.enqueue(flaky, tag) for tag in ("f1", "f2")]
        for task_id in done + failed:
            await wait_for_status(manager, task_id, TERMINAL)
        running = await manager.enqueue(hold, "h")
        await asyncio.wait_for(STARTED.setdefault("h", asyncio.Event()).wait(), 10)

        async def listed(**params: Any) -> list[str]:
            response = await client.get("/tasks", params=params)
            assert response.status_code == 200, response.text
            return [item["task_id"] for item in response.json()]

        everything = [*done, *failed, running]
        assert await listed() == everything[::-1]  # newest first
        assert await listed(status="failed") == failed[::-1]
        assert set(await listed(status=["failed", "running"])) == {*failed, running}
        assert await listed(func_name="remember") == done[::-1]
        assert await listed(search="FLAK") == failed[::-1]  # func_name, case-insensitive
        assert await listed(search=done[2][-12:]) == [done[2]]  # part of an id
        assert await listed(func_name="remember", status="failed") == []
        third = (await client.get(f"/tasks/{done[2]}")).json()["created_at"]
        assert await listed(since=third, func_name="remember") == done[2:][::-1]
        assert await listed(until=third, status="success") == done[:2][::-1]

        walked: list[str] = []
        params: dict[str, Any] = {"limit": 3}
        while True:
            response = await client.get("/tasks", params=params)
            assert response.status_code == 200, response.text
            walked += [item["task_id"] for item in response.json()]
            cursor = response.headers.get("X-Next-Cursor")
            if not cursor:
                break
            assert 'rel="next"' in response.headers["Link"]
            params = {"limit": 3, "cursor": cursor}
        assert walked == everything[::-1]

        metrics = (await client.get("/tasks/metrics")).json()
        counts = {k: metrics[k] for k in ("total", "pending", "running", "success", "failed")}
        assert counts == {"total": 8, "pending": 0, "running": 1, "success": 5, "failed": 2}
        assert metrics["success_rate"] == pytest.approx(5 / 7)
        by_function = {row["func_name"]: row for row in metrics["by_function"]}
        assert by_function["remember"]["success"] == 5
        assert by_function["flaky"]["failed"] == 2

        FAIL_TIMES.clear()  # the retries work
        retried = await client.post(f"/tasks/{failed[0]}/retry")
        assert retried.status_code == 200, retried.text
        retry_id = retried.json()["task_id"]
        assert retried.json()["task"]["retried_from"] == failed[0]
        record = await wait_for_status(manager, retry_id, TERMINAL)
        assert record.status is TaskStatus.SUCCESS and record.result == "ok f1"
        assert record.source == "retry"
        # The chain of f1 succeeded: only f2 is retried.
        report = await client.post("/tasks/retry-failed", params={"since": "all"})
        assert report.status_code == 200, report.text
        assert report.json()["dispatched"] == 1, report.json()
        replayed = await listed(source="retry", search="flaky")
        assert len(replayed) == 2
        for task_id in replayed:
            assert (await wait_for_status(manager, task_id, TERMINAL)).status is (
                TaskStatus.SUCCESS
            )
        assert (await client.post(f"/tasks/{done[0]}/retry")).status_code == 400

        cancelled = await client.post(f"/tasks/{running}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["task"]["status"] == "cancelled"
        await eventually(lambda: asyncio.sleep(0, STOPPED == ["h"]), timeout=10)
        assert (await client.post(f"/tasks/{running}/cancel")).status_code == 400
        assert (await client.get(f"/tasks/{uuid.uuid4()}")).status_code == 404

        schedules = (await client.get("/tasks/schedules")).json()
        assert [(s["name"], s["paused"]) for s in schedules] == [("hourly", False)]
        paused = await client.post("/tasks/schedules/hourly/pause")
        assert paused.status_code == 200 and paused.json()["paused"] is True
        resumed = await client.post("/tasks/schedules/hourly/resume")
        assert resumed.status_code == 200 and resumed.json()["paused"] is False
        assert (await client.post("/tasks/schedules/nope/pause")).status_code == 404

        audit = (await client.get("/tasks/audit")).json()
        actions = [(entry["action"], entry["task_id"]) for entry in audit]
        assert actions == [
            ("schedule_resume", None),
            ("schedule_pause", None),
            ("cancel", running),
            ("retry_failed", None),
            ("retry", failed[0]),
        ], actions
        assert all(entry["actor"] for entry in audit)
        assert audit[3]["detail"]["dispatched"] == 1
        assert audit[0]["detail"] == {"schedule": "hourly"}
        older = await client.get("/tasks/audit", params={"before": audit[1]["entry_id"]})
        assert [entry["entry_id"] for entry in older.json()] == [e["entry_id"] for e in audit[2:]]

        instances = (await client.get("/tasks/instances")).json()
        assert [item["instance_id"] for item in instances] == [manager.instance_id]
        functions = {item["name"] for item in (await client.get("/tasks/functions")).json()}
        assert {"remember", "flaky", "hold"} <= functions
        page = await client.get("/tasks/dashboard")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "<html" in page.text.lower()


# -- retention ------------------------------------------------------------------------


async def test_delete_history_deletes_finished_tasks_and_their_metrics(
    deployment: Deployment,
) -> None:
    manager = await deployment.started()
    finished = [await manager.enqueue(remember, f"r{n}") for n in range(3)]
    failed = await manager.enqueue(always_fails, "x")
    for task_id in [*finished, failed]:
        await wait_for_status(manager, task_id, TERMINAL)
    running = await manager.enqueue(hold, "kept")
    await asyncio.wait_for(STARTED.setdefault("kept", asyncio.Event()).wait(), 10)
    before = await manager.metrics()
    assert before.counts == {"success": 3, "failed": 1, "running": 1}, before.counts

    assert await manager.delete_history(timedelta(0)) == 4
    after = await manager.metrics()
    assert after.counts == {"running": 1}, after.counts
    assert {row.func_name for row in after.by_function if row.total} <= {"hold"}
    for task_id in [*finished, failed]:
        assert await manager.get_task(task_id) is None
    page = await manager.list_tasks(TaskQuery(limit=100))
    assert [record.task_id for record in page.items] == [running]
    assert await manager.delete_history(timedelta(0)) == 0
    await manager.cancel(running)
