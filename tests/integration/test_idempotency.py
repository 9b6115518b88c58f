"""Idempotency keys: one live task per key, whatever the route kind or the instance."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI
from sqlalchemy import func, select

from taskflow import TaskAdmin, TaskArgumentError, TaskManager
from taskflow.db.tables import idempotency_keys_table as K
from taskflow.db.tables import tasks_table as T
from taskflow.models import TaskStatus

CALLS: list[str] = []


async def notify(order: str) -> None:
    CALLS.append(order)


async def flaky(order: str) -> None:
    CALLS.append(order)
    raise RuntimeError("gateway down")


def build(url: str) -> tuple[FastAPI, TaskManager]:
    manager = TaskManager(database_url=url, poll_interval=0.05)
    manager.task(name="notify")(notify)
    manager.task(name="flaky")(flaky)
    app = FastAPI()
    TaskAdmin(app, manager, auto_install=True)

    @app.post("/async/{key}")
    async def async_route(key: str, background_tasks: BackgroundTasks) -> dict[str, Any]:
        first = background_tasks.add_task(notify, key, idempotency_key=key)
        second = background_tasks.add_task(notify, key, idempotency_key=key)
        return {"ids": [first, second]}

    @app.post("/sync/{key}")
    def sync_route(key: str, background_tasks: BackgroundTasks) -> dict[str, Any]:
        return {"ids": [background_tasks.add_task(notify, key, idempotency_key=key)]}

    return app, manager


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    CALLS.clear()


async def count_rows(engine: Any, key: str) -> tuple[int, int]:
    async with engine.connect() as conn:
        tasks = (
            await conn.execute(select(func.count()).where(T.c.idempotency_key == key))
        ).scalar()
        keys = (await conn.execute(select(func.count()).where(K.c.key == key))).scalar()
    return int(tasks or 0), int(keys or 0)


async def test_same_key_same_task_from_async_and_sync_routes(
    schema_db_url: str, engine: Any
) -> None:
    app, manager = build(schema_db_url)
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url="http://t")
    async with app.router.lifespan_context(app), client:
        first = (await client.post("/async/order-1")).json()["ids"]
        again = (await client.post("/sync/order-1")).json()["ids"]
        await manager.drain()
    assert len(set(first + again)) == 1
    assert CALLS == ["order-1"]
    assert await count_rows(engine, "order-1") == (1, 1)


async def test_failed_task_frees_its_key(schema_db_url: str, engine: Any) -> None:
    manager = TaskManager(database_url=schema_db_url, poll_interval=0.05)
    manager.task(name="flaky")(flaky)
    await manager.startup()
    try:
        first = await manager.enqueue(flaky, "o-2", idempotency_key="order-2")
        await manager.drain()
        record = await manager.get_task(first)
        assert record is not None and record.status is TaskStatus.FAILED
        second = await manager.enqueue(flaky, "o-2", idempotency_key="order-2")
        await manager.drain()
        third = await manager.enqueue(flaky, "o-2", idempotency_key="order-2")
    finally:
        await manager.shutdown()
    assert second != first
    assert third != second  # the second failed too, freeing the key again
    tasks, keys = await count_rows(engine, "order-2")
    assert (tasks, keys) == (3, 1)


async def test_a_keyed_task_from_a_worker_thread_does_not_need_the_event_loop(
    schema_db_url: str,
) -> None:
    """A sync route's keyed insert must not hold a write transaction across the app's loop.

    If it ran there, an async route's keyed add_task (which blocks that loop
    until its own insert is done) could wait on the lock that transaction
    holds, which in turn waits for the loop: 30 s, the busy timeout, on SQLite.
    """
    manager = TaskManager(database_url=schema_db_url, poll_interval=0.05)
    manager.task(name="notify")(notify)
    await manager.startup()
    try:
        outcome: list[Any] = []
        thread = threading.Thread(
            target=lambda: outcome.append(
                manager.submit(notify, ("o-9",), {}, idempotency_key="order-9")
            )
        )
        thread.start()
        thread.join(10)  # blocks this event loop on purpose
        assert outcome, "the keyed insert from a thread waited for the blocked event loop"
        manager.dispatch(outcome[0])  # what add_task does next
        await manager.drain()
        record = await manager.get_task(outcome[0].record.task_id)
        assert record is not None and record.status is TaskStatus.SUCCESS
    finally:
        await manager.shutdown()


async def test_two_instances_racing_on_one_key_make_one_task(
    schema_db_url: str, engine: Any
) -> None:
    managers = [TaskManager(database_url=schema_db_url, poll_interval=0.05) for _ in range(2)]
    for manager in managers:
        manager.task(name="notify")(notify)
        await manager.startup()
    try:
        ids = await asyncio.gather(
            *(managers[i % 2].enqueue(notify, "race", idempotency_key="order-3") for i in range(40))
        )
        for manager in managers:
            await manager.drain()
    finally:
        for manager in managers:
            await manager.shutdown()
    assert len(set(ids)) == 1
    assert CALLS == ["race"]
    assert await count_rows(engine, "order-3") == (1, 1)


async def test_key_limits_are_checked_up_front(schema_db_url: str) -> None:
    manager = TaskManager(database_url=schema_db_url)
    await manager.startup()
    try:
        with pytest.raises(TaskArgumentError, match="limit is 255"):
            await manager.enqueue(notify, "x", idempotency_key="k" * 256)
        with pytest.raises(TaskArgumentError, match="non-empty"):
            await manager.enqueue(notify, "x", idempotency_key="")
    finally:
        await manager.shutdown()


async def test_in_memory_database_keys() -> None:
    manager = TaskManager()
    manager.task(name="notify")(notify)
    await manager.startup()
    try:
        first = await manager.enqueue(notify, "m", idempotency_key="mem")
        second = await manager.enqueue(notify, "m", idempotency_key="mem")
        await manager.drain()
    finally:
        await manager.shutdown()
    assert first == second and CALLS == ["m"]
