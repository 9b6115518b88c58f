"""Acknowledging a request's tasks: its response waits until their rows are committed.

An id that reaches a client must name a task the database has.  So every
task a request adds is noted on the request's ``Receipt``, and before the
response starts (``web/acknowledge.py`` holds it) the receipt's rows must be
committed.  They are group-committed with every other request's, so this
costs each request about one commit interval of latency, not throughput.

If the database does not confirm them in time, the request's tasks are
withdrawn: a row still in the write buffer is dropped, one already on its
way to the database is written ``cancelled`` with the reason, and the client
gets 503, so that no task the client was told nothing about runs anyway.
A request that ends without handing its tasks to FastAPI's background
runner (its route raised, or returned a response with a background of its
own) gets them run if its response succeeded and cancelled otherwise, as
FastAPI itself runs no background tasks of a failed request.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from taskflow.models import TaskStatus, utcnow
from taskflow.runtime.runner import LocalTask
from taskflow.runtime.transitions import cancel
from taskflow.runtime.writer import GroupCommitWriter

AcknowledgeMode = Literal["committed", "buffered"]
ACKNOWLEDGE_MODES: tuple[AcknowledgeMode, ...] = ("committed", "buffered")


class Receipt:
    """The tasks one request added, in order; ``acknowledged`` of them are confirmed."""

    __slots__ = ("acknowledged", "closed", "inject", "manager", "tasks")

    def __init__(self, manager: Any, *, inject: bool) -> None:
        self.manager = manager
        # Whether plain ``BackgroundTasks`` annotations of this app get managed ones.
        self.inject = inject
        self.tasks: list[LocalTask] = []
        self.acknowledged = 0
        # Set when the request is over: a task's copy of the request's context
        # still holds the receipt, and what the task adds is no longer its.
        self.closed = False

    def takes(self, manager: Any) -> bool:
        """Whether a task ``manager`` adds now belongs to this request."""
        return not self.closed and self.manager is manager

    @property
    def waiting(self) -> bool:
        """Whether some task of the request is not yet confirmed."""
        return self.acknowledged < len(self.tasks)


current_receipt: contextvars.ContextVar[Receipt | None] = contextvars.ContextVar(
    "taskflow_receipt", default=None
)


@dataclass(frozen=True)
class Refusal:
    """Why a request's tasks could not be acknowledged, and the HTTP status that says so."""

    status_code: int
    detail: str
    retry_after: int | None = None


Forget = Callable[[LocalTask], None]


async def wait_committed(
    tasks: list[LocalTask], writer: GroupCommitWriter, timeout: float, forget: Forget
) -> Refusal | None:
    """Wait until every task's row is committed; None when they all are.

    On a timeout, or when the writer stopped, the tasks are withdrawn
    (``withdraw``) and a 503 refusal is returned; a row the database
    refused for its data gives a 500 refusal (the task does not exist).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    # A sync route's rows reach the writer one loop turn after they are added.
    while not all(local.accepted for local in tasks):
        if loop.time() >= deadline:
            return _withdrawn(tasks, writer, forget, timeout)
        await asyncio.sleep(0)
    commits = {local.inserted for local in tasks if local.inserted is not None}
    unsettled = {commit for commit in commits if not commit.done()}
    if unsettled:
        # A client is waiting: commit what is buffered now rather than after
        # the interval (requests that reach this point in the same turn of
        # the event loop still share the commit).
        writer.hurry()
        # asyncio.wait neither cancels the shared commits nor raises.
        _done, late = await asyncio.wait(unsettled, timeout=max(0.0, deadline - loop.time()))
        if late:
            # An attempt under way may still commit these rows as they were
            # when it began: let it end (bounded), so that the next attempt,
            # if any, writes them withdrawn; a row it did commit stands.
            await writer.attempt_ended(timeout)
            if not all(commit.done() for commit in late):
                return _withdrawn(tasks, writer, forget, timeout)
    rejected: set[str] = set()
    for commit in commits:
        if commit.cancelled() or commit.exception() is not None:
            return _withdrawn(tasks, writer, forget, None)
        rejected |= commit.result().rejected
    refused = [local.record.task_id for local in tasks if local.record.task_id in rejected]
    if refused:
        withdraw(tasks, writer, forget, "not acknowledged: a task of its request was refused")
        return Refusal(
            500,
            f"taskflow could not store task {refused[0]}: the database refused its row "
            "(see the server log); the request's tasks were not created",
        )
    return None


def _withdrawn(
    tasks: list[LocalTask], writer: GroupCommitWriter, forget: Forget, timeout: float | None
) -> Refusal:
    if timeout is None:
        why = "taskflow stopped before the task could be committed"
    else:
        why = f"the database did not confirm the task within {timeout:g}s"
    withdraw(tasks, writer, forget, f"not acknowledged: {why}; the request answered 503")
    return Refusal(
        503,
        f"{why}, so it was not created; retry later",
        retry_after=5,
    )


def withdraw(
    tasks: list[LocalTask], writer: GroupCommitWriter, forget: Forget, reason: str
) -> None:
    """Make sure none of ``tasks`` runs: drop buffered rows, end the others ``cancelled``.

    A row already sealed into a commit that is still retrying may yet be
    written; it is then written ``cancelled`` (records are held by
    reference), or updated to ``cancelled`` if the commit had already gone
    through with it ``pending``.
    """
    for local in tasks:
        if local.record.status is not TaskStatus.PENDING:
            continue  # an eager task that already started or finished: it stands
        local.dispatched = True
        cancel(local.record, utcnow(), reason)
        if not writer.discard(local.record.task_id):
            writer.update(local.record)
        forget(local)
        local.mark_settled()


def settle_request(
    receipt: Receipt,
    status_code: int | None,
    *,
    dispatch: Callable[[LocalTask], None],
    forget: Forget,
    writer: GroupCommitWriter | None,
) -> None:
    """After the request: run (success) or cancel (failure) tasks FastAPI never ran."""
    for local in receipt.tasks:
        if local.dispatched:
            continue
        if status_code is not None and status_code < 400:
            dispatch(local)
        elif writer is not None and local.record.status is TaskStatus.PENDING:
            outcome = "an exception" if status_code is None else f"HTTP {status_code}"
            cancel(
                local.record,
                utcnow(),
                f"not run: its request ended with {outcome} before FastAPI ran its background "
                "tasks (FastAPI runs none for a failed request)",
            )
            local.dispatched = True
            writer.update(local.record)
            forget(local)
            local.mark_settled()
