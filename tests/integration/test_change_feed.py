"""The manager's ``ChangeFeed``: commits, log lines and cancels wake live streams."""

from __future__ import annotations

import asyncio
from pathlib import Path

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
