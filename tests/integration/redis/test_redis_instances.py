"""Instances sharing one Redis prefix: keys, cancel, takeover, change notices, schedules."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest
from fastapi import BackgroundTasks, FastAPI

from taskflow import TaskAdmin, TaskQuery, TaskStatus
from tests.integration.redis.redis_app import (
    CALLS,
    SLOW_FIRST,
    STARTED,
    STOPPED,
    TERMINAL,
    Deployment,
    always_fails,
    beat,
    hold,
    remember,
    remember_sync,
    serving,
    slow_once,
    slow_requeued,
)
from tests.polling import eventually, wait_for_status

# -- idempotency across instances ------------------------------------------------------


async def test_concurrent_keyed_enqueues_on_two_instances_make_one_task(
    deployment: Deployment,
) -> None:
    first, second = await deployment.started(), await deployment.started()
    pairs = []
    for n in range(10):
        key = f"order-{n}"
        pairs.append(
            await asyncio.gather(
                first.enqueue(remember, key, idempotency_key=key),
                second.enqueue(remember, key, idempotency_key=key),
            )
        )
    await asyncio.gather(first.drain(), second.drain())
    for a, b in pairs:
        assert a == b
    assert sorted(CALLS) == sorted(f"order-{n}" for n in range(10))  # each ran once
    page = await first.list_tasks(TaskQuery(func_name="remember", limit=100))
    assert len(page.items) == 10


async def test_keyed_add_task_from_sync_and_async_routes_and_a_failed_holder(
    deployment: Deployment,
) -> None:
    """``add_task(..., idempotency_key=)`` answers at once: from the loop, through the bridge."""
    manager = deployment.manager()
    other = await deployment.started()
    app = FastAPI()
    TaskAdmin(app, manager, auto_install=True)

    @app.post("/async/{key}")
    async def async_route(key: str, background_tasks: BackgroundTasks) -> Any:
        return {"task_id": background_tasks.add_task(remember, key, idempotency_key=key)}

    @app.post("/sync/{key}")
    def sync_route(key: str, background_tasks: BackgroundTasks) -> Any:
        return {"task_id": background_tasks.add_task(remember_sync, key, idempotency_key=key)}

    async with serving(app) as client:
        first = (await client.post("/async/k1")).json()["task_id"]
        again = (await client.post("/sync/k1")).json()["task_id"]
        elsewhere = await other.enqueue(remember, "k1", idempotency_key="k1")
        sync_first = (await client.post("/sync/k2")).json()["task_id"]
        async_again = (await client.post("/async/k2")).json()["task_id"]
        await manager.drain()
        broken = await manager.enqueue(always_fails, "k3", idempotency_key="k3")
        assert (await wait_for_status(manager, broken, TERMINAL)).status is TaskStatus.FAILED
        fresh = (await client.post("/async/k3")).json()["task_id"]  # a failed holder frees it
        await manager.drain()
        record = await manager.get_task(fresh)
    assert first == again == elsewhere
    assert sync_first == async_again != first
    assert fresh != broken
    assert record is not None and record.status is TaskStatus.SUCCESS
    assert Counter(CALLS) == {"k1": 1, "k2": 1, "k3": 3}  # k3: two failed attempts, one run


# -- two instances: cancel across them, take over a dead one's task ---------------------


async def test_a_task_held_by_one_instance_is_cancelled_by_another(
    deployment: Deployment,
) -> None:
    holder = await deployment.started(lease_seconds=2.0)
    other = await deployment.started(lease_seconds=2.0)
    task_id = await holder.enqueue(hold, "held")
    await asyncio.wait_for(STARTED.setdefault("held", asyncio.Event()).wait(), 10)
    assert task_id in holder.local_tasks.held
    record = await other.cancel(task_id)
    assert record.status is TaskStatus.CANCELLED
    # The holder learns it from the store and stops the attempt.
    await eventually(lambda: asyncio.sleep(0, STOPPED == ["held"]), timeout=10)
    await eventually(lambda: asyncio.sleep(0, task_id not in holder.local_tasks.held), timeout=10)
    await holder.drain()
    final = await holder.get_task(task_id)
    assert final is not None and final.status is TaskStatus.CANCELLED, final
    assert final.owner is None


async def test_another_instances_changes_wake_this_ones_dashboard_feed(
    deployment: Deployment,
) -> None:
    watcher = await deployment.started()
    writer = await deployment.started()
    waiter = watcher.changes.subscribe()
    try:
        waiter.take()
        task_id = await writer.enqueue(remember, "seen")
        assert await waiter.wait(timeout=5), "no change notice from the other instance"
        await writer.drain()
        await asyncio.sleep(0.3)  # past the notices' 0.25 s gap
        waiter.take()
        await writer.cancel(await writer.enqueue(hold, "later"))
        assert await waiter.wait(timeout=5)
    finally:
        waiter.unsubscribe()
    record = await watcher.get_task(task_id)
    assert record is not None and record.status is TaskStatus.SUCCESS


@pytest.mark.parametrize("requeue", [False, True], ids=["interrupted", "requeued"])
async def test_a_dead_instances_running_task_is_taken_over(
    deployment: Deployment, requeue: bool
) -> None:
    dead = await deployment.started(lease_seconds=1.0)
    rescuer = await deployment.started(lease_seconds=1.0)
    SLOW_FIRST.append(3.0)
    task_id = await dead.enqueue(slow_requeued if requeue else slow_once, "job")
    await eventually(lambda: asyncio.sleep(0, CALLS == ["job"]), timeout=10)
    began = time.monotonic()
    # The instance freezes: no more heartbeats, its lease runs out.
    await dead.runtime.dispatcher.stop()  # type: ignore[union-attr]
    expected = TaskStatus.SUCCESS if requeue else TaskStatus.INTERRUPTED
    record = await wait_for_status(rescuer, task_id, {expected}, timeout=15)
    waited = time.monotonic() - began
    assert waited >= 0.5, waited  # not before the lease ran out
    assert record.owner is None
    if requeue:
        assert record.retries_used == 1  # the dead attempt counted
        assert CALLS == ["job", "job"]
    else:
        assert record.error is not None and "stopped responding" in record.error
        assert CALLS == ["job"]
    # The frozen instance's own attempt ends; fenced, its success is not written.
    await asyncio.wait_for(dead.drain(), 10)
    final = await rescuer.get_task(task_id)
    assert final is not None and final.status is expected, final


# -- schedules on two instances --------------------------------------------------------


async def test_two_instances_fire_each_schedule_slot_once(deployment: Deployment) -> None:
    managers = []
    for _ in range(2):
        manager = deployment.manager()
        manager.schedule(every=0.2, name="beat")(beat)
        managers.append(manager)
    await asyncio.gather(*(m.startup() for m in managers))
    await asyncio.sleep(1.5)
    await managers[0].pause_schedule("beat")  # shared state: both stop
    await asyncio.gather(*(m.drain() for m in managers))
    page = await managers[0].list_tasks(TaskQuery(func_name="beat", limit=100))
    slots = Counter(record.scheduled_for for record in page.items)
    assert len(slots) >= 5, slots
    assert max(slots.values()) == 1, [s for s, n in slots.items() if n > 1]
    assert all(record.status is TaskStatus.SUCCESS for record in page.items)
    assert sorted(CALLS) == sorted(record.task_id for record in page.items)  # each ran once
    fired = [m.scheduler.stats.fired for m in managers]  # type: ignore[union-attr]
    assert sum(fired) == len(slots)
    state = {s.name: s for s in await managers[1].list_schedules()}
    assert state["beat"].paused
