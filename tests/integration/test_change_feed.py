"""The manager's ``ChangeFeed``: commits, log lines and cancels wake live streams."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from taskflow import TaskManager, task_log
from taskflow.runtime.changes import ChangeWaiter


async def _ids_until(waiter: ChangeWaiter, wanted: str, timeout: float = 5.0) -> set[str]:
    seen: set[str] = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while wanted not in seen:
        assert await waiter.wait(timeout=max(0.0, deadline - loop.time())), seen
        ids = waiter.take()
        assert ids is not None
        seen |= ids
    return seen


async def test_commits_logs_and_cancels_notify_listeners(tmp_path: Path) -> None:
    manager = TaskManager(database_url=f"sqlite:///{tmp_path}/tasks.db")
    gate = asyncio.Event()

    @manager.task()
    async def waits() -> None:
        task_log("started")
        await gate.wait()

    await manager.startup()
    try:
        waiter = manager.changes.subscribe()
        task_id = await manager.enqueue(waits)
        assert task_id in await _ids_until(waiter, task_id)  # the insert's commit
        assert task_id in await _ids_until(waiter, task_id)  # running, and its log line
        await manager.cancel(task_id)
        assert task_id in await _ids_until(waiter, task_id)
        waiter.unsubscribe()
        assert not manager.changes.listening
        closing = manager.changes.subscribe()
    finally:
        gate.set()
        await manager.shutdown()
    assert closing.closed  # shutdown ends every stream


@pytest.mark.parametrize("backend_name", ["postgres", "postgres-psycopg"], indirect=True)
async def test_another_instances_commits_wake_this_instances_streams(database_url: str) -> None:
    """On PostgreSQL a commit on instance B wakes a stream on instance A before any poll."""
    first, second = TaskManager(database_url=database_url), TaskManager(database_url=database_url)

    async def noop() -> None:
        return None

    first.task(name="noop")(noop)
    second.task(name="noop")(noop)
    await first.startup()
    await second.startup()
    try:
        waiter = first.changes.subscribe()
        await asyncio.sleep(0.3)  # past the sender's notice gap, whatever ran before
        waiter.take()
        await second.enqueue(noop)
        # No local commit on the first instance: only the notice can wake it,
        # and it says "re-read" (None), not which ids changed.
        assert await waiter.wait(timeout=5.0)
        assert waiter.take() is None

        # Its own commits do not echo back as remote notices.
        own = first.changes.subscribe()
        await asyncio.sleep(0.3)
        own.take()
        await first.enqueue(noop)
        await first.drain()
        assert await own.wait(timeout=5.0)
        assert own.take() is not None  # named ids from the local feed
    finally:
        await second.shutdown()
        await first.shutdown()


async def test_no_remote_notices_without_postgresql(tmp_path: Path) -> None:
    manager = TaskManager(database_url=f"sqlite:///{tmp_path}/tasks.db")
    await manager.startup()
    try:
        assert await manager.repository.listen_changes(manager.instance_id, lambda: None) is None
    finally:
        await manager.shutdown()
