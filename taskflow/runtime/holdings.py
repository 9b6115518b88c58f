"""Bookkeeping of the tasks this instance holds, as the dispatcher and the writer see it.

The manager keeps the tasks it holds in one dict by id, which its per-task
path changes directly.  What the dispatcher and the writer do with that dict
lives here: how many more claimed rows it may take, which lease epochs each
heartbeat renews, adopting the rows a claim returned, and dropping the tasks
the database says are no longer ours (a write was fenced, or a heartbeat
found the lease gone: another instance took the task over, or it was
cancelled elsewhere).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from taskflow.models import ACTIVE_STATUSES, TaskRecord, TaskStatus
from taskflow.registry import TaskRegistry
from taskflow.runtime.priority import Slots
from taskflow.runtime.recovery import adopt
from taskflow.runtime.runner import LocalTask, TaskRunner
from taskflow.runtime.transitions import fence, undo_start
from taskflow.runtime.writer import GroupCommitWriter
from taskflow.serialization import Cipher

logger = logging.getLogger("taskflow")

MAX_ADOPTED = 1000  # tasks claimed from the database and held locally at once


def room_to_adopt(held: Mapping[str, LocalTask]) -> int:
    """How many more claimed rows this instance takes on (may be zero or less)."""
    return MAX_ADOPTED - len(held)


def held_epochs(held: Mapping[str, LocalTask]) -> dict[str, int]:
    """The lease epoch of each held task whose row is known to be committed."""
    # A pending insert is not lost, just late.
    return {
        task_id: local.record.lease_epoch
        for task_id, local in held.items()
        if local.inserted is None or local.inserted.done()
    }


def drop_fenced(held: dict[str, LocalTask], task_ids: frozenset[str]) -> None:
    """Stop working on tasks the database says are no longer ours; their writes are refused."""
    # Another instance took the task over (our lease had expired) or it was cancelled.
    for task_id in task_ids:
        local = held.pop(task_id, None)
        if local is None:
            continue
        logger.warning("task %s was taken over or cancelled elsewhere; stopping it", task_id)
        # A held task is pending or running; should one not be, it keeps its
        # status rather than fail the writer's or the heartbeat's loop that calls this.
        if local.record.status in ACTIVE_STATUSES:
            fence(local.record)
        if local.handle is not None and not local.handle.done():
            local.handle.cancel()


def adopt_claimed(
    records: list[TaskRecord],
    *,
    started_with: Slots | None = None,
    held: dict[str, LocalTask],
    registry: TaskRegistry,
    cipher: Cipher | None,
    writer: GroupCommitWriter,
    runner: TaskRunner | None,
    dispatch: Callable[[LocalTask], None],
) -> None:
    """Take over claimed rows: hold and ``dispatch`` them, or record why they cannot run.

    ``started_with``: the claim recorded their start, and reserved one of
    these slots for each (see the dispatcher).  Until its attempt begins,
    such a task is held as ``pending`` (what a shutdown writes back if it
    never begins): the start is already in the row.
    """
    for record in records:
        started_at = None
        if started_with is not None:
            started_at = record.start_time
            undo_start(record)
        recovered = record.status is TaskStatus.RUNNING
        local = adopt(record, registry, cipher)
        if local is None or recovered:
            # Ended here, or put back to pending for another attempt.  A pending
            # row that will simply run is written as it is claimed: nothing to add.
            writer.update(record)
        if local is None:
            if started_with is not None:
                started_with.release()
            if runner is not None:
                runner.announce(record)
            continue
        if started_with is not None:
            local.claimed_start = started_at
            # The function's executor changed since the row was written: it
            # takes a slot of its own executor (it may wait for one, already
            # recorded as started; rare, and only after a redeploy).
            local.holds_slot = local.target.executor == record.executor
            if not local.holds_slot:
                started_with.release()
        held[record.task_id] = local
        # Due now: its start is not held back by the commit interval.
        local.urgent = True
        dispatch(local)
