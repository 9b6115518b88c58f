"""Tasks at a time: ``add_task(run_at=/delay=)``, ``enqueue(run_at=)`` and ``schedule_once()``.

Run on every backend: the row is written at once, pending with its
``run_at``, and whichever instance's claim finds it due runs it, once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI

from taskflow import (
    ManagedBackgroundTasks,
    ScheduledOnce,
    TaskAdmin,
    TaskArgumentError,
    TaskManager,
)
from taskflow.models import TaskSource, TaskStatus, utcnow
from tests.conftest import EVERY_BACKEND
from tests.polling import eventually, wait_for_status

pytestmark = pytest.mark.parametrize("backend_name", EVERY_BACKEND, indirect=True)

CALLS: list[str] = []


async def remind(who: str) -> None:
    CALLS.append(who)


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    CALLS.clear()


def new_manager(url: str) -> TaskManager:
    manager = TaskManager(database_url=url, poll_interval=0.05)
    manager.task(name="remind")(remind)
    return manager


@asynccontextmanager
async def running(url: str) -> AsyncIterator[TaskManager]:
    manager = new_manager(url)
    await manager.startup()
    try:
        yield manager
    finally:
        await manager.shutdown()


def soon(seconds: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


async def called() -> bool:
    return bool(CALLS)


async def test_add_task_with_delay_runs_once_after_it(database_url: str) -> None:
    manager = new_manager(database_url)
    app = FastAPI()
    TaskAdmin(app, manager, auto_install=True)

    @app.post("/remind/{who}")
    async def later(who: str, background_tasks: BackgroundTasks) -> dict[str, str]:
        return {"id": background_tasks.add_task(remind, who, delay=0.5)}

    @app.post("/typed/{who}")
    def typed(who: str, background_tasks: ManagedBackgroundTasks) -> dict[str, str]:
        return {"id": background_tasks.with_options(delay=0.5).add_task(remind, who)}

    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    async with app.router.lifespan_context(app), client:
        sent = utcnow()
        task_id = (await client.post("/remind/ada")).json()["id"]
        # Acknowledged: committed before the response, pending, due half a second on.
        record = await manager.repository.get_task(task_id, with_logs=False)
        assert record is not None and record.status is TaskStatus.PENDING
        assert record.run_at >= sent + timedelta(seconds=0.45)
        assert record.owner is None
        await asyncio.sleep(max(0.0, (record.run_at - utcnow()).total_seconds() - 0.1))
        if utcnow() < record.run_at:
            assert CALLS == []
        done = await wait_for_status(manager, task_id, {TaskStatus.SUCCESS}, timeout=10)
        assert done.start_time is not None and done.start_time >= record.run_at
        await asyncio.sleep(0.2)
        assert CALLS == ["ada"]
        # The typed form, from a sync route (its worker thread), behaves alike.
        task_id = (await client.post("/typed/bob")).json()["id"]
        record = await manager.repository.get_task(task_id, with_logs=False)
        assert record is not None and record.status is TaskStatus.PENDING
        await wait_for_status(manager, task_id, {TaskStatus.SUCCESS}, timeout=10)
    assert CALLS == ["ada", "bob"]


async def test_a_task_for_later_runs_on_another_instance(database_url: str) -> None:
    async with running(database_url) as first:
        task_id = await first.enqueue(remind, "grace", run_at=soon(1.5))
    assert CALLS == []  # the first instance stopped before it was due, and did not run it
    async with running(database_url) as second:
        done = await wait_for_status(second, task_id, {TaskStatus.SUCCESS}, timeout=10)
        assert done.attempt <= 1
    assert CALLS == ["grace"]


async def backoff(who: str, delay: int) -> None:
    CALLS.append(f"{who}:{delay}")


async def test_a_task_parameter_named_delay_still_gets_its_value(database_url: str) -> None:
    async with running(database_url) as manager:
        manager.task(name="backoff")(backoff)
        task_id = await manager.enqueue(backoff, "x", delay=7)  # the task's own argument
        await wait_for_status(manager, task_id, {TaskStatus.SUCCESS}, timeout=10)
        later = await manager.with_options(delay=30).enqueue(backoff, "y", delay=8)
        record = await manager.get_task(later)
        assert record is not None and record.status is TaskStatus.PENDING
        assert record.kwargs == {"delay": 8}
        assert record.run_at > utcnow() + timedelta(seconds=25)
    assert CALLS == ["x:7"]


async def test_a_past_run_at_runs_at_once(database_url: str) -> None:
    async with running(database_url) as manager:
        typed = manager.with_options(run_at=soon(-60))
        task_id = await typed.enqueue(remind, "now")
        await wait_for_status(manager, task_id, {TaskStatus.SUCCESS}, timeout=10)
    assert CALLS == ["now"]


async def test_schedule_once_again_replaces_the_pending_one(database_url: str) -> None:
    async with running(database_url) as manager:
        first = await manager.schedule_once(remind, "v1", run_at=soon(30), run_key="r:1")
        second = await manager.schedule_once(remind, "v2", run_at=soon(0.3), run_key="r:1")
        assert isinstance(second, ScheduledOnce) and second.run_key == "r:1"
        assert [entry.task_id for entry in await manager.list_scheduled()] == [second.task_id]
        done = await wait_for_status(manager, second.task_id, {TaskStatus.SUCCESS}, timeout=10)
        assert done.source == TaskSource.SCHEDULED.value
        replaced = await manager.get_task(first.task_id)
        assert replaced is not None and replaced.status is TaskStatus.CANCELLED
        assert await manager.list_scheduled() == []
    assert CALLS == ["v2"]


async def test_racing_schedule_once_from_two_instances_arms_one(database_url: str) -> None:
    async with running(database_url) as first, running(database_url) as second:
        # Due well after the race (on a loaded machine too): an armed task that
        # came due mid-race would rightly run before its replacement.
        armed = await asyncio.gather(
            *(
                (first if n % 2 else second).schedule_once(
                    remind, f"n{n}", run_at=soon(2), run_key="race"
                )
                for n in range(6)
            )
        )
        assert len(await first.list_scheduled()) == 1
        await eventually(called, timeout=15)
        await asyncio.sleep(0.3)
        records = [await first.get_task(entry.task_id) for entry in armed]
        statuses = sorted(record.status.value for record in records if record)
        assert statuses == ["cancelled"] * 5 + ["success"]
    assert len(CALLS) == 1


async def test_cancel_scheduled_prevents_the_run(database_url: str) -> None:
    async with running(database_url) as manager:
        armed = await manager.schedule_once(remind, "x", run_at=soon(1), run_key="c")
        assert await manager.cancel_scheduled("c") is True
        assert await manager.cancel_scheduled("c") is False
        await asyncio.sleep(1.3)
        record = await manager.get_task(armed.task_id)
        assert record is not None and record.status is TaskStatus.CANCELLED
    assert CALLS == []


async def test_list_scheduled_before(database_url: str) -> None:
    async with running(database_url) as manager:
        for n, hours in enumerate((3, 1, 2)):
            await manager.schedule_once(remind, f"h{n}", run_at=soon(hours * 3600), run_key=f"k{n}")
        listed = await manager.list_scheduled()
        assert [entry.run_key for entry in listed] == ["k1", "k2", "k0"]
        bounded = await manager.list_scheduled(before=soon(2.5 * 3600))
        assert [entry.run_key for entry in bounded] == ["k1", "k2"]
        assert all(entry.func_name == "remind" for entry in listed)


async def test_bad_times_are_refused_at_the_call(database_url: str) -> None:
    async with running(database_url) as manager:
        naive = datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(hours=1)
        with pytest.raises(TaskArgumentError, match="timezone-aware"):
            await manager.enqueue(remind, "x", run_at=naive)
        with pytest.raises(TaskArgumentError, match="not both"):
            await manager.enqueue(remind, "x", run_at=soon(5), delay=5)
        with pytest.raises(TaskArgumentError, match="0 or more"):
            await manager.enqueue(remind, "x", delay=-1)
        with pytest.raises(TaskArgumentError, match="finite"):
            await manager.enqueue(remind, "x", delay=float("nan"))
        with pytest.raises(TaskArgumentError, match="century"):
            await manager.enqueue(remind, "x", delay=1e12)
        with pytest.raises(TaskArgumentError, match="run_key"):
            await manager.schedule_once(remind, "x", run_at=soon(5), run_key="")
        # fastapi-taskflow's rule for schedule_once: a naive run_at is UTC.
        armed = await manager.schedule_once(remind, "x", run_at=naive.replace(tzinfo=None))
        assert armed.fire_at.tzinfo is not None
        assert await manager.cancel_scheduled(armed.run_key) is True
    assert CALLS == []
