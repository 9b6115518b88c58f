"""One-off tasks at a time: fastapi-taskflow 0.12's ``schedule_once()``, ``cancel_scheduled()``
and ``list_scheduled()``.

A one-off is an ordinary task row, ``pending`` with its ``run_at`` and no
owner, committed before ``schedule_once()`` returns; the claims of whichever
instance finds it due run it, exactly once, so it survives restarts and
deploys.  Its run key names it: arming the key again replaces it, in the same
transaction (or Redis script), and ``cancel_scheduled()`` cancels it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, ParamSpec

from taskflow.exceptions import DatabaseUnavailableError, NotStartedError
from taskflow.facade.parts import ManagerParts
from taskflow.models import ScheduledOnce, TaskSource, utcnow
from taskflow.runtime.records import check_key
from taskflow.runtime.timing import as_utc, fire_time

P = ParamSpec("P")

_UNAVAILABLE = (
    "taskflow cannot reach its database, where a one-off task is written before "
    "schedule_once() returns: nothing was scheduled; retry later"
)


class OneOffMethods(ManagerParts):
    """``schedule_once()``, ``cancel_scheduled()`` and ``list_scheduled()``."""

    async def schedule_once(
        self,
        func: Callable[..., Any],
        /,
        *args: Any,
        run_at: datetime,
        run_key: str | None = None,
        tags: dict[str, Any] | None = None,
        priority: int | None = None,
        queue: str | None = None,
        idempotency_key: str | None = None,
        **kwargs: Any,
    ) -> ScheduledOnce:
        """Run ``func(*args, **kwargs)`` once at ``run_at``, on whichever instance is free then.

        Returns once the task's row is committed.  ``run_at``: a naive
        datetime is taken as UTC (as in fastapi-taskflow); a past time runs at
        once.  ``run_key``: scheduling again with the same key replaces the
        pending task (atomically, across instances); default: the new task's
        id.  ``queue`` is accepted for fastapi-taskflow's signature and
        ignored (taskflow has no named queues).  With ``idempotency_key``
        held by a live task other than the one replaced, nothing is
        scheduled, and the result's ``task_id`` is that task's.

        Raises:
            TaskArgumentError: a bad ``run_at``, ``run_key`` or argument.
            DatabaseUnavailableError: the database is unreachable; nothing scheduled.
        """
        del queue  # no named queues: every task shares this instance's executors
        submission = self.submission
        if submission.refusal is not None:
            raise NotStartedError(submission.refusal)
        now = utcnow()
        fire_at = fire_time(run_at, now)
        key = check_key(run_key, "run_key")
        target = self.registry.for_function(func)
        record = submission.record_for(
            target, args, kwargs, idempotency_key, tags, priority, owner=None, run_at=fire_at
        )
        record.source = TaskSource.SCHEDULED.value
        key = key or record.task_id
        try:
            armed = await self.repository.arm_once(key, record, now=now)
        except Exception as exc:
            if self.repository.is_transient(exc):
                raise DatabaseUnavailableError(f"{_UNAVAILABLE} ({type(exc).__name__})") from exc
            raise
        alarm = self.local_tasks.alarm
        if alarm is not None and armed == record.task_id and self.local_tasks.on_loop_thread():
            alarm.set(fire_at)  # else the claim poll finds it (another loop called this)
        return ScheduledOnce(
            run_key=key,
            task_id=armed,
            func_name=record.func_name,
            fire_at=fire_at,
            priority=record.priority,
            tags=dict(record.tags),
        )

    async def cancel_scheduled(self, run_key: str) -> bool:
        """Cancel the pending one-off ``run_key`` names; False if none was pending.

        False covers a task that already ran (or started), one cancelled
        before, and a key never used.  The task's row stays, ``cancelled``.
        """
        key = check_key(run_key, "run_key")
        assert key is not None
        return await self.repository.cancel_once(key, now=utcnow())

    async def list_scheduled(self, before: datetime | None = None) -> list[ScheduledOnce]:
        """The armed one-offs still pending, soonest first; only those due before ``before``.

        Read from the database, so it lists every instance's.  A naive
        ``before`` is taken as UTC.
        """
        bound = None if before is None else as_utc(before, "before")
        return await self.repository.list_once(before=bound)
