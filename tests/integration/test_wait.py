"""``wait()`` and ``wait_sync()``: a task's finished record, woken by change notices."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from taskflow import BlockingCallError, NotStartedError, TaskManager, TaskNotFoundError
from taskflow.models import TaskStatus
from tests.conftest import EVERY_BACKEND

pytestmark = pytest.mark.parametrize("backend_name", EVERY_BACKEND, indirect=True)

# Large: a wait that returns well before it must have been woken by a notice.
SLOW_POLL_S = 30.0


@dataclass
class Tasks:
    """A manager and the test's task functions registered on it."""

    manager: TaskManager
    double: Any
    explode: Any
    gated: Any


def register(manager: TaskManager, gate: asyncio.Event) -> Tasks:
    @manager.task(name="double")
    async def double(value: int) -> int:
        return value * 2

    @manager.task(name="explode")
    async def explode() -> None:
        raise ValueError("kaboom")

    @manager.task(name="gated")
    async def gated(value: str) -> str:
        await gate.wait()
        return value

    return Tasks(manager, double, explode, gated)


@pytest.fixture
async def tasks(database_url: str) -> AsyncIterator[Tasks]:
    tasks = register(
        TaskManager(database_url=database_url, poll_interval=SLOW_POLL_S), asyncio.Event()
    )
    await tasks.manager.startup()
    yield tasks
    await tasks.manager.shutdown()


async def test_wait_returns_the_finished_record_with_its_result(tasks: Tasks) -> None:
    manager = tasks.manager
    task_id = await manager.enqueue(tasks.double, 21)
    started = time.monotonic()
    record = await manager.wait(task_id, timeout=10)
    assert record.status is TaskStatus.SUCCESS
    assert record.result == 42
    assert time.monotonic() - started < 5  # woken by the commit, not by the 30 s poll
    assert not manager.changes.listening  # the waiter unsubscribed


async def test_a_failing_task_returns_failed_with_its_error(tasks: Tasks) -> None:
    record = await tasks.manager.wait(await tasks.manager.enqueue(tasks.explode), timeout=10)
    assert record.status is TaskStatus.FAILED
    assert record.error is not None and "kaboom" in record.error


async def test_timeout_raises_quickly_and_the_task_goes_on(tasks: Tasks) -> None:
    manager = tasks.manager
    task_id = await manager.enqueue(tasks.gated, "x")
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=task_id):
        await manager.wait(task_id, timeout=0.2)
    assert time.monotonic() - started < 2
    record = await manager.get_task(task_id)
    assert record is not None and record.status in (TaskStatus.PENDING, TaskStatus.RUNNING)
    await manager.cancel(task_id)
    assert (await manager.wait(task_id, timeout=10)).status is TaskStatus.CANCELLED


async def test_an_unknown_id_raises_task_not_found(tasks: Tasks) -> None:
    with pytest.raises(TaskNotFoundError, match="no-such-task"):
        await tasks.manager.wait("no-such-task", timeout=1)


async def test_wait_sync_runs_on_the_managers_loop_and_is_refused_on_it(tasks: Tasks) -> None:
    manager = tasks.manager
    task_id = await manager.enqueue(tasks.double, 4)
    record = await asyncio.to_thread(manager.wait_sync, task_id, 10)
    assert record.status is TaskStatus.SUCCESS and record.result == 8
    with pytest.raises(BlockingCallError, match=r"await task_manager\.wait\(task_id\)"):
        manager.wait_sync(task_id)
    gated = await manager.enqueue(tasks.gated, "y")
    with pytest.raises(TimeoutError):
        await asyncio.to_thread(manager.wait_sync, gated, 0.1)
    await manager.cancel(gated)


async def test_wait_before_startup_says_how_to_start(database_url: str) -> None:
    manager = TaskManager(database_url=database_url)
    with pytest.raises(NotStartedError, match="TestClient"):
        await manager.wait("anything")
    errors: list[BaseException] = []

    def call() -> None:
        try:
            manager.wait_sync("anything")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    thread.join()
    assert isinstance(errors[0], NotStartedError)


async def test_a_task_finished_by_another_instance_wakes_the_waiter(
    backend_name: str, database_url: str
) -> None:
    # Where the store pushes notices, the waiter's poll is too slow to be what wakes it.
    pushes = backend_name in ("postgres", "redis")
    poll = SLOW_POLL_S if pushes else 0.2
    here = register(TaskManager(database_url=database_url, poll_interval=poll), asyncio.Event())
    gate = asyncio.Event()
    there = register(TaskManager(database_url=database_url), gate)
    await here.manager.startup()
    await there.manager.startup()
    try:
        task_id = await there.manager.enqueue(there.gated, "done")
        waiter = asyncio.create_task(here.manager.wait(task_id, timeout=20))
        await asyncio.sleep(0.5)  # the waiter has read the row (active) and sleeps
        assert not waiter.done()
        gate.set()
        started = time.monotonic()
        record = await waiter
        assert record.status is TaskStatus.SUCCESS and record.result == "done"
        if pushes:
            assert time.monotonic() - started < 3
    finally:
        gate.set()
        await there.manager.shutdown()
        await here.manager.shutdown()


async def test_a_quick_task_on_another_instance_is_announced_when_it_ends(
    backend_name: str, database_url: str
) -> None:
    """Notices are spaced out per instance; the last change of a burst is still announced."""
    if backend_name not in ("postgres", "redis"):
        pytest.skip("this store has no change notices: the poll finds the task")
    here = register(
        TaskManager(database_url=database_url, poll_interval=SLOW_POLL_S), asyncio.Event()
    )
    there = register(TaskManager(database_url=database_url), asyncio.Event())
    await here.manager.startup()
    await there.manager.startup()
    try:
        for value in range(3):
            started = time.monotonic()
            task_id = await there.manager.enqueue(there.double, value)
            record = await here.manager.wait(task_id, timeout=20)
            assert record.status is TaskStatus.SUCCESS and record.result == value * 2
            assert time.monotonic() - started < 3
    finally:
        await there.manager.shutdown()
        await here.manager.shutdown()


async def test_a_shutdown_ends_the_wait_with_not_started(database_url: str) -> None:
    gate = asyncio.Event()
    tasks = register(TaskManager(database_url=database_url, shutdown_grace=0.2), gate)
    await tasks.manager.startup()
    task_id = await tasks.manager.enqueue(tasks.gated, "late")
    waiter = asyncio.create_task(tasks.manager.wait(task_id))
    await asyncio.sleep(0.1)
    await tasks.manager.shutdown()
    with pytest.raises(NotStartedError, match="shut down"):
        await waiter
