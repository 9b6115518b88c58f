"""TaskManager end to end: retries with persisted delays, tasks that always fail.

On every SQL backend. Each test builds its own app, runs it through its
lifespan with an in-process ASGI client, and checks the outcome twice: through
the task API (``GET /tasks/{id}``) and with plain SQL on ``taskflow_tasks`` /
``taskflow_task_logs`` over a fresh connection, the way users report on it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import BackgroundTasks

from taskflow import get_task_context, task_log
from tests.integration.manager.harness import Harness, from_json
from tests.processes import stored_utc

# asyncio's monotonic clock and the wall clock may disagree by a hair.
CLOCK_SLACK = timedelta(milliseconds=2)


async def test_retries_until_success_with_persisted_delays(harness: Harness) -> None:
    manager, raw = harness.manager, harness.raw
    attempts: list[int] = []
    failed_at: list[datetime] = []
    retry_run_at: list[datetime] = []

    @manager.task(retries=2, delay=0.01, backoff=2)
    async def flaky_charge(amount: int) -> dict[str, int]:
        context = get_task_context()
        assert context is not None
        attempts.append(context.attempt)
        task_log(f"charging {amount}, attempt {context.attempt}")
        if context.attempt == 1:
            # The first retry's delay was written to the row before it waited.
            row = await raw.task_where(context.task_id, lambda r: r["attempt"] == 1)
            retry_run_at.append(stored_utc(row["run_at"]))  # type: ignore[arg-type]
        if context.attempt < 2:
            failed_at.append(datetime.now(timezone.utc))
            raise ConnectionError(f"gateway timeout #{context.attempt}")
        return {"charged": amount}

    @harness.app.post("/charge")
    async def charge(background_tasks: BackgroundTasks) -> dict[str, Any]:
        return {"task_id": background_tasks.add_task(flaky_charge, 30)}

    async with harness.serve() as client:
        task_id = (await client.post("/charge")).json()["task_id"]
        await manager.drain()
        data = await harness.api_task(client, task_id)

    assert attempts == [0, 1, 2]
    assert data["status"] == "success"
    assert data["retries_used"] == 2
    assert data["max_retries"] == 2
    assert data["result"] == {"charged": 30}
    assert data["error"] is None
    logs = data["logs"]
    assert "--- Retry 1 ---" in logs and "--- Retry 2 ---" in logs
    first, second = logs.index("--- Retry 1 ---"), logs.index("--- Retry 2 ---")
    assert logs[0].endswith("charging 30, attempt 0")
    assert first < second
    assert logs[first + 1].endswith("attempt 1")
    assert logs[second + 1].endswith("attempt 2")

    row = await raw.task(task_id)
    assert row is not None
    assert row["status"] == "success"
    assert row["attempt"] == 2
    assert row["max_retries"] == 2
    assert row["error"] is None and row["stacktrace"] is None
    assert from_json(row["result"]) == {"charged": 30}
    # Retry 1 waited delay, retry 2 waited delay * backoff; both were persisted as run_at.
    assert retry_run_at[0] - failed_at[0] >= timedelta(seconds=0.01)
    final_run_at = stored_utc(row["run_at"])
    assert final_run_at is not None
    assert final_run_at - failed_at[1] >= timedelta(seconds=0.02)
    started = stored_utc(row["started_at"])
    assert started is not None and started >= final_run_at - CLOCK_SLACK


async def test_always_failing_task_ends_failed_with_trace(harness: Harness) -> None:
    manager = harness.manager

    @manager.task(retries=1)
    def always_fails_sync(order_id: int) -> None:
        task_log("trying")
        raise ValueError(f"order {order_id} is invalid")

    @manager.task(retries=1, delay=0.001)
    async def always_fails_async(order_id: int) -> None:
        raise KeyError(f"order-{order_id}")

    @harness.app.post("/orders")
    def orders(background_tasks: BackgroundTasks) -> dict[str, Any]:
        return {
            "sync": background_tasks.add_task(always_fails_sync, 7),
            "async": background_tasks.add_task(always_fails_async, 8),
        }

    async with harness.serve() as client:
        ids = (await client.post("/orders")).json()
        await manager.drain()
        sync_data = await harness.api_task(client, ids["sync"])
        async_data = await harness.api_task(client, ids["async"])

    assert sync_data["status"] == "failed"
    assert sync_data["retries_used"] == 1
    assert sync_data["error"] == "ValueError: order 7 is invalid"
    assert "always_fails_sync" in sync_data["stacktrace"]
    assert sync_data["logs"] == [sync_data["logs"][0], "--- Retry 1 ---", sync_data["logs"][2]]
    assert async_data["status"] == "failed"
    assert "KeyError" in async_data["error"] and "order-8" in async_data["error"]
    assert "always_fails_async" in async_data["stacktrace"]

    for task_id, func_name, error_type in (
        (ids["sync"], "always_fails_sync", "ValueError"),
        (ids["async"], "always_fails_async", "KeyError"),
    ):
        row = await harness.raw.task(task_id)
        assert row is not None
        assert row["status"] == "failed"
        assert row["attempt"] == 1
        assert error_type in row["error"]
        assert func_name in row["stacktrace"] and "Traceback" in row["stacktrace"]
        assert row["finished_at"] is not None and row["duration_ms"] is not None
        assert row["owner"] is None and row["lease_expires_at"] is None
    assert await harness.raw.count("status IN ('pending', 'running')") == 0
