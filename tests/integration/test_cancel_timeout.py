"""Cancelling tasks (pending, running, on another instance) and per-task timeouts."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from taskflow import TaskAdmin, TaskManager, TaskStatus

EVENTS: list[str] = []
RELEASE = threading.Event()


async def long_async(tag: str) -> None:
    EVENTS.append(f"start:{tag}")
    await asyncio.sleep(30)
    EVENTS.append(f"end:{tag}")


def long_sync(tag: str) -> None:
    EVENTS.append(f"start:{tag}")
    RELEASE.wait(10)
    EVENTS.append(f"end:{tag}")


async def quick(tag: str) -> None:
    EVENTS.append(f"run:{tag}")


async def too_slow() -> None:
    EVENTS.append("attempt")
    await asyncio.sleep(5)


@pytest.fixture(autouse=True)
def _reset() -> Any:
    EVENTS.clear()
    RELEASE.clear()
    yield
    RELEASE.set()


def make(url: str) -> TaskManager:
    manager = TaskManager(database_url=url, poll_interval=0.05)
    manager.task(name="long_async")(long_async)
    manager.task(name="long_sync")(long_sync)
    manager.task(name="quick", retries=3, delay=30)(quick)
    manager.task(name="too_slow", timeout=0.2, retries=1)(too_slow)
    return manager


async def wait_status(manager: TaskManager, task_id: str, status: TaskStatus) -> None:
    for _ in range(400):
        record = await manager.get_task(task_id)
        if record is not None and record.status is status:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{task_id} never became {status}")


async def test_cancel_running_and_pending_through_the_api(schema_db_url: str) -> None:
    manager = make(schema_db_url)
    app = FastAPI()
    TaskAdmin(app, manager)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    async with app.router.lifespan_context(app), client:
        running = await manager.enqueue(long_async, "a")
        running_sync = await manager.enqueue(long_sync, "s")
        await wait_status(manager, running, TaskStatus.RUNNING)
        await wait_status(manager, running_sync, TaskStatus.RUNNING)

        answer = await client.post(f"/tasks/{running}/cancel")
        assert answer.status_code == 200, answer.text
        assert answer.json()["task"]["status"] == "cancelled"
        answer = await client.post(f"/tasks/{running_sync}/cancel")
        assert answer.status_code == 200
        assert "thread cannot be stopped" in answer.json()["task"]["error"]

        assert (await client.post(f"/tasks/{running}/cancel")).status_code == 400
        missing = await client.post("/tasks/no-such-task/cancel")
        assert missing.status_code == 404 and missing.json() == {"detail": "Task not found"}
        RELEASE.set()
        await manager.drain()
        record = await manager.get_task(running_sync)
    assert "end:a" not in EVENTS  # the coroutine really stopped
    assert (
        record is not None and record.status is TaskStatus.CANCELLED
    )  # the thread's end did not overwrite it


async def test_cancelled_retry_never_runs_again(schema_db_url: str) -> None:
    calls: list[int] = []

    async def fails_once() -> None:
        calls.append(1)
        raise RuntimeError("first attempt fails")

    manager = make(schema_db_url)
    manager.task(name="fails_once", retries=2, delay=0.3)(fails_once)
    await manager.startup()
    try:
        task_id = await manager.enqueue(fails_once)
        for _ in range(100):
            if calls:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        record = await manager.cancel(task_id)  # while waiting 0.3 s for its retry
        await asyncio.sleep(0.5)
        await manager.drain()
        final = await manager.get_task(task_id)
    finally:
        await manager.shutdown()
    assert record.status is TaskStatus.CANCELLED
    assert final is not None and final.status is TaskStatus.CANCELLED
    assert calls == [1]


async def test_cancel_a_task_held_by_another_instance(schema_db_url: str) -> None:
    holder, other = make(schema_db_url), make(schema_db_url)
    holder.heartbeat_interval = 0.1  # it learns of the cancel at its next heartbeat
    await holder.startup()
    await other.startup()
    try:
        task_id = await holder.enqueue(long_async, "remote")
        await wait_status(holder, task_id, TaskStatus.RUNNING)
        record = await other.cancel(task_id)
        assert record.status is TaskStatus.CANCELLED
        assert record.lease_epoch == 2  # the holder is fenced out
        for _ in range(100):  # ...and stops the attempt at its next heartbeat
            if task_id not in holder.local_tasks.held:
                break
            await asyncio.sleep(0.02)
        assert task_id not in holder.local_tasks.held
    finally:
        await holder.shutdown()  # its "interrupted" write is refused: the row stays cancelled
        await other.shutdown()
    checker = make(schema_db_url)
    await checker.startup()
    try:
        final = await checker.get_task(task_id)
    finally:
        await checker.shutdown()
    assert final is not None and final.status is TaskStatus.CANCELLED


async def test_timeout_fails_the_attempt_and_counts_toward_retries(schema_db_url: str) -> None:
    manager = make(schema_db_url)
    await manager.startup()
    started = time.monotonic()
    try:
        task_id = await manager.enqueue(too_slow)
        await wait_status(manager, task_id, TaskStatus.FAILED)
        record = await manager.get_task(task_id)
    finally:
        await manager.shutdown()
    assert time.monotonic() - started < 4
    assert EVENTS == ["attempt", "attempt"]
    assert record is not None and record.retries_used == 1
    assert "timeout of 0.2s" in (record.error or "")
