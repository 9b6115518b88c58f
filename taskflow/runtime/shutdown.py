"""What becomes of the tasks an instance still holds when it shuts down.

Two steps, in order.  First the tasks it accepted get their grace period to
run and end, and then everything still going is stopped; then every task
still held is written down as what it now is, so no row is left looking alive under an owner that
is gone.  Running ones become ``interrupted`` (or ``pending`` again when
their function asked for it); waiting ones lose their owner, so another
instance, or the next start, claims them at once rather than after the lease.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from taskflow.models import TaskRecord, TaskStatus, utcnow
from taskflow.runtime.runner import LocalTask, TaskRunner
from taskflow.runtime.transitions import interrupt, release
from taskflow.runtime.writer import GroupCommitWriter

LEFTOVER_WAIT_S = 5.0  # for cancelled background jobs to unwind
INTERRUPTED_BY_SHUTDOWN = "interrupted by shutdown"


async def finish_running_tasks(
    held: Mapping[str, LocalTask],
    background: set[asyncio.Task[Any]],
    *,
    shutdown_grace: float,
    process_shutdown_timeout: float,
    stop_starting: Callable[[], None],
) -> None:
    """Run what was accepted for ``shutdown_grace``; then stop everything still going.

    As with FastAPI's own background tasks, the tasks of the last requests
    before a shutdown still run: every held task that is due (running,
    about to start, waiting for a concurrency slot) gets the grace period,
    process tasks ``process_shutdown_timeout``.  Cancelling a process task
    kills its worker, so it is recorded ``interrupted`` only once its code
    has really stopped.  Tasks waiting for a later retry are not waited
    for: they stay ``pending`` with their ``run_at`` and are released.
    After the grace no attempt starts any more (``stop_starting``).
    """
    loop = asyncio.get_running_loop()
    began = loop.time()
    handles = {local.handle for local in held.values() if local.handle is not None}
    for task in background:
        if task not in handles:
            task.cancel()  # not a task's run (a service job): nothing to wait for
    while True:
        now = loop.time()
        due = [
            local
            for local in held.values()
            if _worth_waiting_for(
                local, began, now, limits=(shutdown_grace, process_shutdown_timeout)
            )
        ]
        if not due:
            break
        waiting = {
            local.handle for local in due if local.handle is not None and not local.handle.done()
        }
        # Polled: a task whose commit is pending gets its handle only then.
        await asyncio.wait(waiting, timeout=0.05) if waiting else await asyncio.sleep(0.05)
    stop_starting()
    for task in list(background):
        if not task.done():
            task.cancel()
    for local in held.values():
        if local.handle is not None and not local.handle.done():
            local.handle.cancel()
    leftovers = [task for task in background if not task.done()]
    leftovers += [
        local.handle
        for local in held.values()
        if local.handle is not None and not local.handle.done()
    ]
    if leftovers:
        await asyncio.wait(set(leftovers), timeout=LEFTOVER_WAIT_S)


def _worth_waiting_for(
    local: LocalTask, began: float, now: float, *, limits: tuple[float, float]
) -> bool:
    if not local.dispatched or local.retry_waiting:
        return False
    if local.record.status not in (TaskStatus.PENDING, TaskStatus.RUNNING):
        return False
    grace, process_grace = limits
    running_process = (
        local.target.executor == "process" and local.record.status is TaskStatus.RUNNING
    )
    return now - began < (process_grace if running_process else grace)


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
        status = record.status
        if status is TaskStatus.RUNNING and not local.target.config.requeue_on_interrupt:
            interrupt(record, now, INTERRUPTED_BY_SHUTDOWN)
        elif status is TaskStatus.RUNNING or status is TaskStatus.PENDING:
            release(record, now)
        else:
            record.updated_at = now  # already over: written as it is
        released.append(record)
    return released
