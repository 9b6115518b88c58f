"""The submission path: a call of a registered function becomes a held task with a buffered row.

``add_task()`` in a route, ``enqueue()`` and the caller's-transaction
variants all come through here: validate the call, build its record, settle
its idempotency key, and hand the row to the writer (or to the caller's
session).  Runs on the event loop or in a sync route's worker thread.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from datetime import datetime
from typing import Any

from taskflow.exceptions import (
    BackpressureError,
    DatabaseUnavailableError,
    NotStartedError,
    TaskArgumentError,
)
from taskflow.models import TaskRecord, TaskSource
from taskflow.registry import RegisteredTask, TaskRegistry
from taskflow.repository.base import TaskRepository
from taskflow.runtime.bridge import BlockingBridge
from taskflow.runtime.confirmation import confirm_enqueued
from taskflow.runtime.keys import MemoryKeys
from taskflow.runtime.local_tasks import LocalTasks
from taskflow.runtime.processes import ship_function
from taskflow.runtime.records import new_record
from taskflow.runtime.runner import LocalTask
from taskflow.serialization import Cipher

_UNAVAILABLE = (
    "taskflow cannot reach its database, where a task with an idempotency key is "
    "written at once: the task was not created; retry later"
)
_NOT_STARTED = (
    "the TaskManager is not started, and a task must be written to the database "
    "before it can run: call task_manager.init_app(app) (TaskAdmin does it for you) "
    "or await task_manager.startup() in your lifespan; in tests, use "
    "`with TestClient(app) as client:` so that the app's lifespan runs"
)


class Submission:
    """Turns calls into held tasks; ``open()`` and ``close()`` follow the manager's lifecycle."""

    def __init__(
        self,
        *,
        registry: TaskRegistry,
        repository: TaskRepository,
        tasks: LocalTasks,
        bridge: BlockingBridge,
        database_problem: Callable[[], str | None],
    ) -> None:
        self.registry = registry
        self.repository = repository
        self.tasks = tasks
        self.bridge = bridge
        self.lease_seconds = 0.0
        self.cipher: Cipher | None = None
        self.database_problem = database_problem
        self.memory_keys = MemoryKeys()
        self.owner = ""
        self.refusal: str | None = _NOT_STARTED

    def open(self, owner: str, *, cipher: Cipher | None, lease_seconds: float) -> None:
        """Accept calls from now on, for instance ``owner``, with this start's options."""
        self.owner = owner
        self.cipher = cipher
        self.lease_seconds = lease_seconds
        self.refusal = None

    def close(self, reason: str | None = None) -> None:
        """Refuse calls from now on (shutting down, or stopped when ``reason`` is None)."""
        self.refusal = reason or _NOT_STARTED

    def submit(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        tags: dict[str, Any] | None = None,
        priority: int | None = None,
        source: TaskSource = TaskSource.MANUAL,
        run_at: datetime | None = None,
    ) -> LocalTask | str:
        """Validate a call, create its row (buffered for commit) and hold it locally.

        Returns the ``LocalTask`` to dispatch, or, when ``idempotency_key``
        belongs to a live task already, that task's id (and nothing is
        created).  With a future ``run_at`` the task is ``deferred``: not
        held, left to the claims once committed.  Safe to call from the
        event loop or from a worker thread.
        """
        local = self._prepare(func, args, kwargs, idempotency_key, tags, priority, source, run_at)
        if self._keyed_in_database(local):
            holder = self._insert_with_key_blocking(local.record)
        else:
            holder = self._key_holder_in_memory(local)
        if holder != local.record.task_id:
            return holder
        self._register(local)
        return local

    async def enqueue(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        idempotency_key: str | None,
        tags: dict[str, Any] | None,
        priority: int | None,
        acknowledge_timeout: float,
        run_at: datetime | None = None,
    ) -> str:
        """``TaskManager.enqueue()`` without a session: returns once the row is committed."""
        local = self._prepare(
            func, args, kwargs, idempotency_key, tags, priority, TaskSource.MANUAL, run_at
        )
        if self._keyed_in_database(local):
            holder = await self._insert_with_key(local.record)
        else:
            holder = self._key_holder_in_memory(local)
        if holder != local.record.task_id:
            return holder
        self._register(local)
        # Dispatched before the wait: a caller cancelled while it waits must
        # not leave the task held here and never run (the commit starts it).
        self.tasks.dispatch(local, hurry=True)
        if local.inserted is not None:
            writer = self.tasks.writer
            assert writer is not None
            await confirm_enqueued(local, writer, acknowledge_timeout, self.tasks.forget)
        return local.record.task_id

    async def add_to_transaction(
        self,
        session: Any,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        idempotency_key: str | None,
        tags: dict[str, Any] | None,
        priority: int | None,
        wake: Callable[[], None],
        run_at: datetime | None = None,
    ) -> str:
        """Add the task's row to the caller's ``AsyncSession`` transaction; returns its id."""
        target = self.registry.for_function(func)
        record = self.record_for(
            target, args, kwargs, idempotency_key, tags, priority, owner=None, run_at=run_at
        )
        return await self.repository.add_to_transaction(session, record, wake)

    def add_to_transaction_sync(
        self,
        session: Any,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        wake: Callable[[], None],
    ) -> str:
        """Add the task's row to the caller's ``Session`` transaction; returns its id."""
        target = self.registry.for_function(func)
        # No owner: whichever instance claims it after the caller's commit runs it.
        record = self.record_for(target, args, kwargs, None, None, None, owner=None)
        return self.repository.add_to_transaction_sync(session, record, wake)

    def record_for(
        self,
        target: RegisteredTask,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        idempotency_key: str | None,
        tags: dict[str, Any] | None,
        priority: int | None,
        *,
        owner: str | None,
        run_at: datetime | None = None,
    ) -> TaskRecord:
        if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
            raise TaskArgumentError(f"priority must be an integer or None, got {priority!r}")
        if target.executor == "process":
            ship_function(target.func)  # TaskArgumentError now, not in the worker later
        return new_record(
            target,
            args,
            kwargs,
            owner=owner,
            lease_seconds=self.lease_seconds,
            cipher=self.cipher,
            idempotency_key=idempotency_key,
            tags=tags,
            priority=priority,
            max_argument_bytes=self.repository.max_argument_bytes,
            run_at=run_at,
        )

    def _prepare(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        idempotency_key: str | None,
        tags: dict[str, Any] | None,
        priority: int | None,
        source: TaskSource,
        run_at: datetime | None = None,
    ) -> LocalTask:
        if self.refusal is not None:
            raise NotStartedError(self.refusal)
        target = self.registry.for_function(func)
        # A task for later has no owner: any instance's claim may run it when due.
        owner = self.owner if run_at is None else None
        record = self.record_for(
            target, args, kwargs, idempotency_key, tags, priority, owner=owner, run_at=run_at
        )
        if source is not TaskSource.MANUAL:  # new_record's default
            record.source = source.value
        local = LocalTask(
            record=record, target=target, args=args, kwargs=kwargs, deferred=run_at is not None
        )
        local.context = contextvars.copy_context()
        return local

    def _key_holder_in_memory(self, local: LocalTask) -> str:
        """The task holding the key when the database is in memory (else ``local``'s own id)."""
        if local.record.idempotency_key is None:
            return local.record.task_id
        return self.memory_keys.settle(local.record)

    def _keyed_in_database(self, local: LocalTask) -> bool:
        # A store no other process sees: the key map is ours.
        return local.record.idempotency_key is not None and not self.repository.is_process_private

    def _register(self, local: LocalTask) -> None:
        """Hold the task locally; hand its row to the writer unless it is committed already."""
        tasks = self.tasks
        writer, loop = tasks.writer, tasks.loop
        assert writer is not None and loop is not None
        committed = self._keyed_in_database(local)
        if tasks.on_loop_thread():
            if not committed:
                local.inserted = writer.insert(local.record)
            if not local.deferred:
                tasks.held[local.record.task_id] = local
            return
        if not committed:
            writer.check_capacity()
        local.accepted = False
        loop.call_soon_threadsafe(self._accept_from_thread, local, committed)

    def _accept_from_thread(self, local: LocalTask, committed: bool) -> None:
        writer = self.tasks.writer
        assert writer is not None
        if not committed:
            try:
                local.inserted = writer.insert(local.record)
            except BackpressureError:
                # Already promised to the caller: accept it past the limit, never drop it.
                local.inserted = writer.insert(local.record, force=True)
        if not local.deferred:
            self.tasks.held[local.record.task_id] = local
        local.accepted = True

    def _insert_with_key_blocking(self, record: TaskRecord) -> str:
        """Insert a keyed task now (its id depends on the database) and return the key's owner.

        Always on the bridge's own loop and connection, from a worker thread
        too.  Run on the app's loop, a sync route's insert held SQLite's write
        lock across awaits there; an async route's keyed add_task, blocking that
        loop on the bridge, then waited for that lock until the busy timeout
        (30 s), and the transaction holding it could not finish meanwhile.
        """
        self._refuse_keyed_while_unreachable()
        try:
            return self.bridge.call(lambda repository: repository.insert_with_key(record))
        except Exception as exc:
            if self.repository.is_transient(exc):
                raise _unavailable(exc) from exc
            raise

    async def _insert_with_key(self, record: TaskRecord) -> str:
        self._refuse_keyed_while_unreachable()
        try:
            return await self.repository.insert_with_key(record)
        except Exception as exc:
            if self.repository.is_transient(exc):
                raise _unavailable(exc) from exc
            raise

    def _refuse_keyed_while_unreachable(self) -> None:
        """Fail at once, rather than after a connection timeout, while the database is away.

        A keyed task's row is inserted there and then (the key's owner is
        decided by the database), so it cannot wait in the write buffer.
        """
        if self.database_problem() is not None:
            raise DatabaseUnavailableError(_UNAVAILABLE)


def _unavailable(exc: Exception) -> DatabaseUnavailableError:
    return DatabaseUnavailableError(f"{_UNAVAILABLE} ({type(exc).__name__})")
