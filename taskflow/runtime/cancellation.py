"""Cancelling a task wherever it is: running here, waiting here, or held elsewhere.

Which of the three it is decides who writes ``cancelled``.  A task running
here is stopped through its asyncio task and the runner records the result,
since only the runner knows when the attempt is really over (a process
task's worker must be gone first).  A task waiting here is ended at once,
through the writer like every other change of a held task.  Any other task
is changed in the database without a lease guard; that fences out whichever
instance holds it, whose next write is refused, so it drops the task.
"""

from __future__ import annotations

import asyncio

from taskflow.exceptions import InvalidTransitionError, TaskNotFoundError
from taskflow.models import TaskStatus, utcnow
from taskflow.repository.base import TaskRepository
from taskflow.runtime.runner import LocalTask, TaskRunner
from taskflow.runtime.transitions import cancel, sources_of
from taskflow.runtime.writer import GroupCommitWriter

RUNNING_STOP_WAIT_S = 5.0  # how long cancel() waits for a running attempt to end
# What the database may cancel without a lease guard: whatever the table lets end cancelled.
CANCELLABLE = sources_of(TaskStatus.CANCELLED)


async def cancel_task(
    task_id: str,
    *,
    held: dict[str, LocalTask],
    repository: TaskRepository,
    writer: GroupCommitWriter | None,
    runner: TaskRunner | None,
) -> None:
    """Cancel ``task_id``; ``held`` is this instance's tasks by id.

    Raises:
        TaskNotFoundError: no task has that id.
        InvalidTransitionError: the task is already finished.
    """
    local = held.get(task_id)
    if local is not None and local.record.status is TaskStatus.RUNNING:
        await _cancel_running(local)
    elif local is not None and local.record.status is TaskStatus.PENDING:
        assert writer is not None and runner is not None
        _cancel_pending(local, held, writer, runner)
    else:
        await _cancel_elsewhere(repository, task_id)


async def _cancel_running(local: LocalTask) -> None:
    local.cancel_requested = True
    if local.handle is not None and not local.handle.done():
        local.handle.cancel()
        await asyncio.wait({local.handle}, timeout=RUNNING_STOP_WAIT_S)


def _cancel_pending(
    local: LocalTask,
    held: dict[str, LocalTask],
    writer: GroupCommitWriter,
    runner: TaskRunner,
) -> None:
    cancel(local.record, utcnow(), "cancelled before it started")
    writer.update(local.record)
    runner.announce(local.record)
    held.pop(local.record.task_id, None)
    if local.handle is not None and not local.handle.done():
        local.handle.cancel()  # a retry waiting for its time, or a task not yet started
    # A runner cancelled before its first step never reaches its own
    # mark_settled(): the next task of the request must not wait for it.
    local.mark_settled()


async def _cancel_elsewhere(repository: TaskRepository, task_id: str) -> None:
    cancelled = await repository.transition(
        task_id,
        expected_status=list(CANCELLABLE),
        expected_epoch=None,
        status=TaskStatus.CANCELLED,
        error="cancelled",
    )
    if cancelled:
        return
    record = await repository.get_task(task_id, with_logs=False)
    if record is None:
        raise TaskNotFoundError(f"no task has id {task_id!r}")
    which = " or ".join(status.value for status in CANCELLABLE)
    raise InvalidTransitionError(
        f"task {task_id} is {record.status.value}: only {which} tasks can be cancelled"
    )
