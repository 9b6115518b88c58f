"""Waiting for what another task, thread or process does, without fixed sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from taskflow import TaskManager
from taskflow.models import TaskRecord, TaskStatus

_T = TypeVar("_T")


async def eventually(
    probe: Callable[[], Awaitable[_T | None]], timeout: float = 20.0, interval: float = 0.005
) -> _T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        await asyncio.sleep(interval)


async def wait_for_status(
    manager: TaskManager, task_id: str, statuses: set[TaskStatus], timeout: float = 30.0
) -> TaskRecord:
    """The task's record once its status is one of ``statuses``."""
    deadline = time.monotonic() + timeout
    while True:
        record = await manager.get_task(task_id)
        if record is not None and record.status in statuses:
            return record
        if time.monotonic() > deadline:
            raise AssertionError(f"{task_id} is {record and record.status}, not in {statuses}")
        await asyncio.sleep(0.01)
