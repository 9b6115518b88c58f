"""What becomes of the tasks an instance still holds when it shuts down.

Two steps, in order.  First the running attempts get their grace period to
end and everything else is stopped; then every task still held is written
down as what it now is, so no row is left looking alive under an owner that
is gone.  Running ones become ``interrupted`` (or ``pending`` again when
their function asked for it); waiting ones lose their owner, so another
instance, or the next start, claims them at once rather than after the lease.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from taskflow.models import TaskRecord, TaskStatus, utcnow
from taskflow.runtime.runner import LocalTask, TaskRunner
from taskflow.runtime.writer import GroupCommitWriter

LEFTOVER_WAIT_S = 5.0  # for cancelled background jobs to unwind


async def finish_running_tasks(
    held: Mapping[str, LocalTask],
    background: set[asyncio.Task[Any]],
    *,
    shutdown_grace: float,
    process_shutdown_timeout: float,
) -> None:
    """Give running attempts ``shutdown_grace`` to end; stop everything else now.

    Process tasks get ``process_shutdown_timeout`` instead; cancelling one
    kills its worker process, so it is recorded ``interrupted`` only once
    its code has really stopped.  Tasks that have not started (queued
    behind another, waiting for a retry, waiting for a concurrency slot)
    are not started any more: they stay ``pending`` and are released for
    another instance at once.
    """
    running: dict[asyncio.Task[Any], float] = {
        local.handle: (
            process_shutdown_timeout if local.target.executor == "process" else shutdown_grace
        )
        for local in held.values()
        if local.record.status is TaskStatus.RUNNING and local.handle is not None
    }
    for task in background:
        if task not in running:
            task.cancel()
    still: set[asyncio.Task[Any]] = set()
    loop, began = asyncio.get_running_loop(), asyncio.get_running_loop().time()
    for grace in sorted(set(running.values())):  # each group's deadline counts from now
        group = {task for task, limit in running.items() if limit == grace and not task.done()}
        if group:
            left = max(0.0, began + grace - loop.time())
            _done, late = await asyncio.wait(group, timeout=left) if left else (set(), group)
            still |= late
    for task in still:
        task.cancel()
    leftovers = [task for task in background if not task.done()]
    if leftovers:
        await asyncio.wait(leftovers, timeout=LEFTOVER_WAIT_S)


def release_held(
    held: dict[str, LocalTask], writer: GroupCommitWriter, runner: TaskRunner | None
) -> int:
    """Write down what this instance still holds, and hold nothing any more.

    Returns how many tasks were handed back for another instance to run.
    """
    handed_back = 0
    for local in held.values():
        local.mark_settled()  # whatever waits for its first attempt waits no more
    for record in release_unfinished(list(held.values())):
        writer.update(record)
        handed_back += record.status is TaskStatus.PENDING
        if record.status is TaskStatus.INTERRUPTED and runner is not None:
            runner.announce(record)
    held.clear()
    return handed_back


def release_unfinished(tasks: list[LocalTask]) -> list[TaskRecord]:
    """What becomes of each held task: changed in place, returned to be written.

    Running ones become ``interrupted`` (or ``pending`` again with
    ``requeue_on_interrupt``); pending ones lose their owner, so any instance,
    or the next start, claims them at once instead of waiting for the lease.
    """
    now = utcnow()
    released = []
    for local in tasks:
        record = local.record
        if record.status is TaskStatus.RUNNING:
            if local.target.config.requeue_on_interrupt:
                record.status = TaskStatus.PENDING
                record.end_time = None
            else:
                record.status = TaskStatus.INTERRUPTED
                record.end_time = now
                record.error = "interrupted by shutdown"
        if record.status is TaskStatus.PENDING:
            record.owner = None
            record.lease_expires_at = None
        if record.status is TaskStatus.INTERRUPTED:
            record.owner = None
            record.lease_expires_at = None
        record.updated_at = now
        released.append(record)
    return released
