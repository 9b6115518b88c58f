"""Waiting for one task to finish: woken by the change feed, with a slow poll underneath.

The writer notifies the feed after each commit with the ids it wrote, and
other instances' commits arrive on it as "something changed" (PostgreSQL
LISTEN/NOTIFY, Redis pub/sub).  A waiter reads the row only when its task
may have changed, so waiting costs nothing while other tasks run.  Stores
without a notice channel (MySQL, a second process on a SQLite file) and a
notice lost on the way are covered by re-reading every ``poll_interval``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from taskflow.exceptions import NotStartedError, TaskNotFoundError
from taskflow.models import TaskRecord
from taskflow.runtime.changes import ChangeFeed, ChangeWaiter


async def wait_for_finish(
    task_id: str,
    *,
    read: Callable[[str], Awaitable[TaskRecord | None]],
    feed: ChangeFeed,
    timeout: float | None,
    poll_interval: float,
) -> TaskRecord:
    """Return the task's record once its status is terminal.

    Raises:
        TaskNotFoundError: no task has that id (or it was deleted meanwhile).
        TimeoutError: it was still active after ``timeout`` seconds.
        NotStartedError: the manager shut down before the task finished.
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    # Subscribed before the first read: a commit between the two still wakes us.
    waiter = feed.subscribe()
    try:
        while True:
            record = await read(task_id)
            if record is None:
                raise TaskNotFoundError(f"no task has the id {task_id!r}")
            if record.status.is_terminal:
                return record
            if waiter.closed:
                raise NotStartedError(
                    f"the TaskManager shut down while task {task_id} was {record.status.value}"
                )
            await _until_it_may_have_changed(waiter, task_id, loop, deadline, poll_interval)
    finally:
        waiter.unsubscribe()


async def _until_it_may_have_changed(
    waiter: ChangeWaiter,
    task_id: str,
    loop: asyncio.AbstractEventLoop,
    deadline: float | None,
    poll_interval: float,
) -> None:
    """Return when a notice names the task (or names nothing), or the poll is due."""
    poll_at = loop.time() + poll_interval
    while True:
        now = loop.time()
        if deadline is not None and now >= deadline:
            raise _timed_out(task_id)
        wake_at = poll_at if deadline is None else min(poll_at, deadline)
        if not await waiter.wait(max(0.0, wake_at - now)):
            if deadline is not None and loop.time() >= deadline:
                raise _timed_out(task_id)
            return  # the poll is due
        ids = waiter.take()
        if waiter.closed or ids is None or task_id in ids:
            return


def _timed_out(task_id: str) -> TimeoutError:
    return TimeoutError(f"task {task_id} did not finish within the timeout; it may still run")
