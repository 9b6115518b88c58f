"""Every move of a task between statuses, as one table, and the functions that make them.

A task's status and lease change in memory in many places: the runner's
attempts, recovery of claimed rows, shutdown, cancellation, the fence that
drops a task taken over elsewhere.  Each of those goes through one function
here, and each function first asks ``ALLOWED_MOVES`` whether the record's
current status may go to the new one, raising ``InvalidTransitionError``
otherwise.  So the table is the one place that says which moves exist, and a
move nobody planned for fails loudly where it is made instead of being
written.

The check is one dict lookup and one frozenset membership: the runner makes
these moves for every attempt of every task.

The database keeps its own guards (a batch changes only ``pending`` and
``running`` rows; ``transition()`` takes the statuses it expects): those
protect rows from other instances, this table protects a record from its own
process.  Where the runtime names the expected statuses of a database move,
it derives them from this table (``sources_of``).

Not moves, so not here: the writer carrying a lease forward as it writes
(the status stays), and the splitter writing ``failed`` in place of a state
the database refused (a substitute for a write, made on a copy).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from taskflow.exceptions import InvalidTransitionError
from taskflow.models import TERMINAL_STATUSES, TaskRecord, TaskStatus
from taskflow.storable import storable_text

_NOTHING: frozenset[TaskStatus] = frozenset()

ALLOWED_MOVES: Final[Mapping[TaskStatus, frozenset[TaskStatus]]] = {
    # pending -> pending: released (owner cleared), or put back before its start.
    # pending -> failed: a claimed row whose function or arguments cannot be loaded.
    TaskStatus.PENDING: frozenset(
        {TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.FAILED, TaskStatus.CANCELLED}
    ),
    # running -> pending: a retry, a requeue after an interruption, or a start
    # that is not (or not yet) this attempt's.
    TaskStatus.RUNNING: frozenset(
        {
            TaskStatus.PENDING,
            TaskStatus.SUCCESS,
            TaskStatus.FAILED,
            TaskStatus.INTERRUPTED,
            TaskStatus.CANCELLED,
        }
    ),
    # Terminal: a finished task is never changed in place (a retry is a new row).
    TaskStatus.SUCCESS: _NOTHING,
    TaskStatus.FAILED: _NOTHING,
    TaskStatus.INTERRUPTED: _NOTHING,
    TaskStatus.CANCELLED: _NOTHING,
}


def sources_of(status: TaskStatus) -> tuple[TaskStatus, ...]:
    """The statuses a task may move to ``status`` from, in the enum's order."""
    return tuple(source for source in TaskStatus if status in ALLOWED_MOVES[source])


def check_move(record: TaskRecord, to: TaskStatus) -> None:
    """Raise ``InvalidTransitionError`` unless the table lets ``record`` move to ``to``."""
    if to not in ALLOWED_MOVES[record.status]:
        raise refused(record, to)


def refused(record: TaskRecord, to: TaskStatus) -> InvalidTransitionError:
    """The error for a move the table does not allow; it names both statuses."""
    allowed = ALLOWED_MOVES[record.status]
    then = (
        "it may only move to " + ", ".join(s.value for s in TaskStatus if s in allowed)
        if allowed
        else f"{record.status.value} is terminal"
    )
    return InvalidTransitionError(
        f"task {record.task_id} cannot move from {record.status.value} to {to.value}: {then}"
    )


# -- an attempt --------------------------------------------------------------------------


def start_attempt(record: TaskRecord, now: datetime, executor: str, lease: timedelta) -> None:
    """pending -> running: the attempt starts now, on ``executor``, under a fresh lease.

    What the end of an earlier attempt left (end time, duration) is cleared,
    so the row never shows a running task as ended.
    """
    if TaskStatus.RUNNING not in ALLOWED_MOVES[record.status]:
        raise refused(record, TaskStatus.RUNNING)
    record.status = TaskStatus.RUNNING
    record.start_time = now
    record.end_time = None
    record.duration_ms = None
    record.executor = executor
    record.updated_at = now
    record.lease_expires_at = now + lease


def start_claimed(record: TaskRecord, started_at: datetime | None) -> None:
    """pending -> running, for a start the claim already recorded in the row.

    Nothing else changes: the row says so since the claim, and the record
    was only held as ``pending`` until its attempt began.
    """
    if TaskStatus.RUNNING not in ALLOWED_MOVES[record.status]:
        raise refused(record, TaskStatus.RUNNING)
    record.status = TaskStatus.RUNNING
    record.start_time = started_at


def undo_start(record: TaskRecord) -> None:
    """running -> pending, start time cleared: a start that is not this attempt's.

    Either its commit never came (the row still says ``pending``, and a
    shutdown must release the task rather than record an interruption), or a
    claim recorded it and the attempt has not begun yet.
    """
    if TaskStatus.PENDING not in ALLOWED_MOVES[record.status]:
        raise refused(record, TaskStatus.PENDING)
    record.status = TaskStatus.PENDING
    record.start_time = None


def succeed(record: TaskRecord, now: datetime, elapsed: float, result: Any) -> None:
    """running -> success, with the (storable) result; the lease ends with the attempt."""
    if TaskStatus.SUCCESS not in ALLOWED_MOVES[record.status]:
        raise refused(record, TaskStatus.SUCCESS)
    record.status = TaskStatus.SUCCESS
    record.result = result
    record.error = None
    record.stacktrace = None
    _close(record, now, elapsed)


def fail(record: TaskRecord, now: datetime, elapsed: float) -> None:
    """running -> failed, for good: the caller has set the error and stack trace."""
    if TaskStatus.FAILED not in ALLOWED_MOVES[record.status]:
        raise refused(record, TaskStatus.FAILED)
    record.status = TaskStatus.FAILED
    _close(record, now, elapsed)


def cancel_attempt(record: TaskRecord, now: datetime, elapsed: float, error: str) -> None:
    """running -> cancelled: the attempt was stopped on request after ``elapsed`` seconds."""
    if TaskStatus.CANCELLED not in ALLOWED_MOVES[record.status]:
        raise refused(record, TaskStatus.CANCELLED)
    record.status = TaskStatus.CANCELLED
    record.error = error
    _close(record, now, elapsed)


def schedule_retry(
    record: TaskRecord, now: datetime, delay: float, elapsed: float, lease: timedelta
) -> None:
    """running -> pending: a failed attempt's task is due again in ``delay`` seconds.

    The wait is the row's ``run_at``, so a restart loses no retry; the lease
    outlasts it, so no other instance claims the task while this one waits.
    """
    if TaskStatus.PENDING not in ALLOWED_MOVES[record.status]:
        raise refused(record, TaskStatus.PENDING)
    wait = timedelta(seconds=delay)
    record.retries_used += 1
    record.status = TaskStatus.PENDING
    record.run_at = now + wait
    record.end_time = now
    record.duration_ms = elapsed * 1000.0
    record.updated_at = now
    record.lease_expires_at = now + wait + lease


def _close(record: TaskRecord, now: datetime, elapsed: float) -> None:
    # The end of an attempt's task: nobody holds it any more.
    record.end_time = now
    record.duration_ms = elapsed * 1000.0
    record.updated_at = now
    record.owner = None
    record.lease_expires_at = None


# -- without an attempt ------------------------------------------------------------------


def end_record(record: TaskRecord, status: TaskStatus, now: datetime, error: str) -> None:
    """Mark a task finished in ``status`` (a terminal one) without running it further.

    The owner and lease are cleared: a finished row is nobody's.
    """
    if status not in ALLOWED_MOVES[record.status]:
        raise refused(record, status)
    if status not in TERMINAL_STATUSES:
        raise InvalidTransitionError(
            f"task {record.task_id} cannot end by moving from {record.status.value} "
            f"to {status.value}: that is not an end"
        )
    record.status = status
    record.error = storable_text(error)
    record.end_time = now
    record.updated_at = now
    record.owner = None
    record.lease_expires_at = None


def cancel(record: TaskRecord, now: datetime, error: str) -> None:
    """-> cancelled, ending the task where it is (``error`` says why)."""
    end_record(record, TaskStatus.CANCELLED, now, error)


def interrupt(record: TaskRecord, now: datetime, error: str) -> None:
    """running -> interrupted: its attempt was cut short (a crash, a shutdown)."""
    end_record(record, TaskStatus.INTERRUPTED, now, error)


def requeue_interrupted(record: TaskRecord, now: datetime, error: str) -> None:
    """running -> pending, due now: a cut attempt counts, and the task runs again.

    The owner stays: the instance that found the cut attempt (its claim)
    holds the task and runs it next.
    """
    if TaskStatus.PENDING not in ALLOWED_MOVES[record.status]:
        raise refused(record, TaskStatus.PENDING)
    record.status = TaskStatus.PENDING
    record.retries_used += 1
    record.run_at = now
    record.error = error
    record.updated_at = now


def release(record: TaskRecord, now: datetime) -> None:
    """pending|running -> pending with no owner or lease: any instance claims it at once.

    A running task released this way (its function asked to be run again
    after an interruption) loses its unfinished attempt's end time too.
    """
    if TaskStatus.PENDING not in ALLOWED_MOVES[record.status]:
        raise refused(record, TaskStatus.PENDING)
    if record.status is TaskStatus.RUNNING:
        record.end_time = None
    record.status = TaskStatus.PENDING
    record.owner = None
    record.lease_expires_at = None
    record.updated_at = now


def fence(record: TaskRecord) -> None:
    """pending|running -> cancelled, in memory only: the database says it is not ours.

    Another instance took the task over or it was cancelled elsewhere; this
    instance stops working on it and writes nothing more (its writes would
    be refused), so only the status changes.
    """
    if TaskStatus.CANCELLED not in ALLOWED_MOVES[record.status]:
        raise refused(record, TaskStatus.CANCELLED)
    record.status = TaskStatus.CANCELLED
