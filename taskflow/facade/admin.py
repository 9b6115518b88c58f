"""Reading tasks and acting on them: lists, metrics, cancel, retries, audit log, instances, history.

What the dashboard and the admin API call, and what applications call to
look at tasks.  Reads go to the database, so they see every instance's tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from taskflow import audit
from taskflow.exceptions import TaskNotFoundError
from taskflow.facade.parts import ManagerParts
from taskflow.facade.store import TaskStoreView
from taskflow.models import AuditEntry, TaskMetrics, TaskRecord, utcnow
from taskflow.replay import Replayer, RetryReport
from taskflow.repository.base import InstanceStatus, TaskPage, TaskQuery
from taskflow.runtime.cancellation import cancel_task
from taskflow.runtime.retention import RetentionService

if TYPE_CHECKING:
    from taskflow.manager import TaskManager

logger = logging.getLogger("taskflow")

# How long a read waits for this instance's buffered writes before it reads anyway.
OWN_WRITES_WAIT_S = 2.0


class AdminMethods(ManagerParts):
    """Reads, cancel, retries, the audit log, live instances and history retention."""

    # -- reading -------------------------------------------------------------

    @property
    def store(self) -> TaskStoreView:
        """fastapi-taskflow's ``store``: ``get(task_id)`` and ``list()``, read from the database.

        Sync routes call ``store.get(task_id)``; async code awaits
        ``store.aget(task_id)`` (see ``TaskStoreView``).
        """
        return TaskStoreView(cast("TaskManager", self))

    async def get_task(self, task_id: str) -> TaskRecord | None:
        """A task by id, from the database (so it sees every instance's tasks)."""
        await self._commit_own_writes()
        return await self.repository.get_task(task_id)

    async def list_tasks(self, query: TaskQuery | None = None) -> TaskPage:
        """A page of tasks, newest first."""
        await self._commit_own_writes()
        return await self.repository.list_tasks(query or TaskQuery())

    async def metrics(self) -> TaskMetrics:
        """Counts, success rate and per-function durations, aggregated in SQL."""
        await self._commit_own_writes()
        return await self.repository.metrics()

    async def merged_list(self) -> list[TaskRecord]:
        """fastapi-taskflow's full list; here the newest 1,000 tasks from the database."""
        await self._commit_own_writes()
        return (await self.repository.list_tasks(TaskQuery(limit=1000))).items

    async def _commit_own_writes(self) -> None:
        """Let a read see this instance's buffered writes: a task added a moment ago is found.

        Bounded, so that a database that stopped accepting writes cannot hang
        the reads as well; they then show what is committed.
        """
        writer = None if self.runtime is None else self.runtime.writer
        if writer is None or not writer.pending or not self.local_tasks.on_loop_thread():
            return
        if writer.failing:
            return  # read what is committed rather than wait for the outage
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(writer.flush(), OWN_WRITES_WAIT_S)

    async def cancel(self, task_id: str) -> TaskRecord:
        """Cancel a pending or running task, on this instance or any other.

        A pending task never starts.  A running async task is cancelled; a
        running process task's worker process is killed, and the call
        returns once it is gone; a running sync task stops being awaited and
        is recorded ``cancelled`` (a thread cannot be stopped; the error says
        so).  A task held by
        another instance is cancelled in the database, which fences that
        instance out: its next write is refused and it drops the task.

        Raises:
            TaskNotFoundError: no task has that id.
            InvalidTransitionError: the task is already finished.
        """
        runtime = self.runtime
        await cancel_task(
            task_id,
            held=self.local_tasks.held,
            repository=self.repository,
            writer=None if runtime is None else runtime.writer,
            runner=None if runtime is None else runtime.runner,
        )
        await self.flush()
        self.changes.notify((task_id,))
        record = await self.get_task(task_id)
        assert record is not None
        return record

    # -- retries, audit log, instances (logic in taskflow.replay, taskflow.audit) --

    async def retry(self, task_id: str, *, actor: str) -> TaskRecord:
        """Run a failed or interrupted task again, as a new task with the same arguments.

        The new task (``source="retry"``, ``retried_from=task_id``) gets the
        original's stored arguments, tags, priority and executor, and is run
        by whichever instance's dispatcher claims it first.  Audited.

        Raises:
            TaskNotFoundError: no task has that id.
            InvalidTransitionError: the task is not failed or interrupted.
            FunctionNotRegisteredError: its function is not registered in this process.
            ConfigurationError: its arguments are encrypted and no key is configured.
        """
        new_id = await self._replayer().retry(task_id)
        await self.record_audit(
            "retry", actor=actor, task_id=task_id, detail={"new_task_id": new_id}
        )
        record = await self.repository.get_task(new_id)
        if record is None:
            raise TaskNotFoundError(f"the retry {new_id} of {task_id} was deleted already")
        return record

    async def bulk_retry(self, task_ids: Sequence[str], *, actor: str) -> RetryReport:
        """Retry each listed task that is failed or interrupted; the rest are skipped.  Audited."""
        report = await self._replayer().bulk(task_ids)
        detail = {"dispatched": report.dispatched, "skipped": report.skipped}
        await self.record_audit(
            "bulk_retry", actor=actor, detail={**detail, "task_ids": list(task_ids[:20])}
        )
        return report

    async def retry_failed(
        self, since: str | timedelta | None = "6h", func_name: str | None = None, *, actor: str
    ) -> RetryReport:
        """Retry each failed or interrupted task created in the last ``since`` (or ``"all"``).

        ``since`` is ``"<N>m"``, ``"<N>h"``, ``"<N>d"``, ``"all"``/None, or a
        ``timedelta``.  Each chain of retries is retried once, from its newest
        failed attempt: a failure that has a retry already is skipped.
        Bounded: one call creates at most ``taskflow.replay.MAX_REPLAY_DISPATCH``
        retries and looks at most at ``MAX_REPLAY_SCAN`` failures
        (``report.capped`` says more remained: call again).  Audited.

        Raises:
            InvalidWindowError: ``since`` has another form.
        """
        report = await self._replayer().replay(since, func_name)
        await self.record_audit(
            "retry_failed",
            actor=actor,
            detail={
                "since": since if isinstance(since, str) or since is None else str(since),
                "func_name": func_name,
                "dispatched": report.dispatched,
                "skipped": report.skipped,
                "capped": report.capped,
            },
        )
        return report

    def _replayer(self) -> Replayer:
        return Replayer(
            self.repository,
            self.registry,
            can_decrypt=self.fernet is not None,
            on_inserted=self._retries_committed,
        )

    async def _retries_committed(self) -> None:
        # New unowned rows: wake our dispatcher now and, on PostgreSQL, the others'.
        self.wake()
        try:
            await self.repository.announce_work()
        except Exception as exc:  # polling finds the rows regardless
            logger.warning("could not announce retried tasks: %s", exc)

    async def record_audit(
        self,
        action: str,
        *,
        actor: str,
        task_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """Append an entry to the audit log (``GET {path}/audit``): who did what, when.

        For state changes made through the admin API, and for logins and
        logouts.  ``detail`` is stored as JSON (values JSON cannot hold are
        stored as their ``str()``).

        Raises:
            ValueError: ``action`` is empty or longer than 32 characters, or
                ``task_id`` is not a task id.
        """
        return await audit.record_entry(
            self.repository, action, actor=actor, task_id=task_id, detail=detail
        )

    async def list_audit(self, *, limit: int = 100, before: int | None = None) -> list[AuditEntry]:
        """Audit entries newest first; the last ``entry_id`` as ``before`` gives the next page."""
        return await audit.list_entries(self.repository, limit=limit, before=before)

    async def list_instances(self) -> list[InstanceStatus]:
        """Instances alive now (a heartbeat within ``lease_seconds``), with running task counts."""
        alive_since = utcnow() - timedelta(seconds=self.lease_seconds)
        return await self.repository.list_live_instances(alive_since=alive_since)

    def set_retention(self, days: float | None) -> None:
        """Change ``retention_days`` (``TaskAdmin(retention_days=...)`` overrides the manager's)."""
        self.retention_days = days
        if self.retention is not None:
            if days is None:
                self._services.remove(self.retention)
                self.retention = None
            else:
                self.retention.days = days
        elif days is not None:
            self.retention = RetentionService(self.repository, days)
            self._services.append(self.retention)

    async def delete_history(self, older_than: timedelta) -> int:
        """Delete finished tasks (and their logs) older than ``older_than``; returns how many.

        Terminal means success, failed, interrupted and cancelled, here and in
        ``retention_days`` alike; pending and running tasks are never deleted.
        """
        deleted = await self.repository.delete_finished_before(utcnow() - older_than)
        self.changes.notify(None)
        return deleted
