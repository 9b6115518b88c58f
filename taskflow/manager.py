"""``TaskManager``: the composition root that wires storage, writer, runner and web glue.

It is also the public facade applications call.  The jobs it delegates keep
their logic in modules of their own (``runtime.cancellation``,
``runtime.shutdown``, ``runtime.holdings``, ``audit``, ``replay``, ...); what
stays here is wiring, lifecycle order, and the per-task path (``submit``,
``dispatch``, ``spawn`` and the helpers they call), kept inline on purpose:
it runs for every request, so every call layer added to it is paid per task.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import sys
import threading
from collections.abc import Callable, Coroutine, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from taskflow import audit
from taskflow.backends import SnapshotBackend, choose_database_url
from taskflow.exceptions import (
    BackpressureError,
    ConfigurationError,
    DatabaseUnavailableError,
    NotStartedError,
    TaskArgumentError,
    TaskNotFoundError,
)
from taskflow.models import (
    AuditEntry,
    ExceptionTypes,
    ExecutorName,
    JitterName,
    TaskConfig,
    TaskMetrics,
    TaskRecord,
    TaskSource,
    utcnow,
)
from taskflow.observe.observer import LoggerChain
from taskflow.observe.setup import build_observers
from taskflow.observe.tracing import task_tracer
from taskflow.options import (
    check_choice,
    check_limits,
    check_not_negative,
    check_positive,
    commit_interval_for,
    heartbeat_interval_for,
)
from taskflow.registry import RegisteredTask, TaskRegistry
from taskflow.replay import Replayer, RetryReport
from taskflow.repository.base import InstanceStatus, TaskPage, TaskQuery, TaskRepository
from taskflow.repository.factory import create_repository
from taskflow.runtime.acknowledgement import (
    ACKNOWLEDGE_MODES,
    AcknowledgeMode,
    Receipt,
    Refusal,
    settle_request,
    wait_committed,
)
from taskflow.runtime.bridge import BlockingBridge
from taskflow.runtime.cancellation import cancel_task
from taskflow.runtime.changes import ChangeFeed, RemoteChanges
from taskflow.runtime.confirmation import confirm_enqueued
from taskflow.runtime.dispatcher import Dispatcher
from taskflow.runtime.executors import AsyncExecutor, ThreadExecutor
from taskflow.runtime.heap import freeze_startup_heap
from taskflow.runtime.holdings import MAX_ADOPTED as MAX_ADOPTED  # still importable from here
from taskflow.runtime.holdings import (
    adopt_claimed,
    drop_fenced,
    held_epochs,
    room_to_adopt,
)
from taskflow.runtime.instance import describe_instance, new_instance_id
from taskflow.runtime.keys import MemoryKeys
from taskflow.runtime.priority import Slots
from taskflow.runtime.processes import ProcessExecutor, ship_function
from taskflow.runtime.readiness import DatabaseConnector, Readiness
from taskflow.runtime.records import new_record
from taskflow.runtime.retention import RetentionService
from taskflow.runtime.runner import Executor, LocalTask, TaskRunner
from taskflow.runtime.scheduler import PeriodicScheduler
from taskflow.runtime.shutdown import finish_running_tasks, release_held
from taskflow.runtime.writer import GroupCommitWriter
from taskflow.schedules import CatchUp, ScheduledEntry, ScheduleState, check_catch_up, make_trigger
from taskflow.security import build_cipher
from taskflow.settings import DatabaseTarget, resolve_database_url

if TYPE_CHECKING:
    from fastapi import APIRouter, BackgroundTasks, FastAPI

    from taskflow.web.background import ManagedBackgroundTasks

logger = logging.getLogger("taskflow")
# ``_background`` is swept of finished tasks once it holds this many (or
# twice as many as after the last sweep).
BACKGROUND_SWEEP_MIN = 1024


class Service(Protocol):
    """Something that runs while the manager runs."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


F = TypeVar("F", bound=Callable[..., Any])

# How long a read waits for this instance's buffered writes before it reads anyway.
OWN_WRITES_WAIT_S = 2.0
# How long startup waits for a first connection attempt that neither succeeds
# nor fails (a server that accepts and does not answer) before it goes on
# without it.  Longer than a connect timeout, so that an unreachable server is
# judged by its error.
STARTUP_CONNECT_WAIT_S = 30.0
# How long a start's first query may wait for an answer: longer than the
# drivers' connect timeout (10 s), so that their own errors come first.
OPEN_TIMEOUT_S = 15.0


def _never_transient(_exc: BaseException) -> bool:
    return False


class TaskManager:
    """Registers task functions, persists every task, and runs them in this process.

    Args:
        database_url: any SQLAlchemy URL; plain ``postgresql://``, ``mysql://`` and
            ``sqlite:///`` URLs get their async driver.  Defaults to
            ``TASKFLOW_DATABASE_URL``, else an in-memory SQLite database.
        snapshot_db / snapshot_backend: fastapi-taskflow's ways to name the
            database (a SQLite path, or a backend object / URL).
        create_tables: run the migrations at startup; default True for SQLite only.
        write_buffer_size: writes held while the database is unreachable before
            ``add_task()`` raises ``BackpressureError``.
        commit_interval: under load, the longest a write waits for the next group
            commit, in seconds (an idle writer commits at once).  Default: 0.01 on
            a SQLite file, whose commits run on the event loop, else 0.002.
        lease_seconds: how long another instance waits before it treats this
            instance's tasks as abandoned.
        shutdown_grace: seconds running tasks get to finish at shutdown.
        max_concurrent_tasks / max_sync_threads / max_process_workers: how many
            async, thread and process tasks run at once (unlimited, the thread
            pool's default size, ``min(4, cpu_count)``); more wait as ``pending``,
            highest ``priority`` first.
        process_shutdown_timeout: seconds running process tasks get at shutdown
            before their worker processes are killed (they become ``interrupted``).
        acknowledge: ``"committed"`` (default): a response that carries task ids
            leaves only once those tasks' rows are committed, and answers 503
            when the database does not confirm them within
            ``acknowledge_timeout`` seconds (no task is then created).
            ``"buffered"``: responses do not wait; rows are committed a few
            milliseconds later, so a crash in between loses tasks whose ids the
            client already has (see docs/guide/durability.md).
        acknowledge_timeout: seconds a response waits for its tasks' commit
            before answering 503, and ``await enqueue()`` before raising
            ``CommitTimeoutError`` (in either ``acknowledge`` mode).
        freeze_gc_at_startup: at the end of ``startup()``, collect garbage and
            ``gc.freeze()`` the objects alive then, so that full collections
            skip the app's start-up heap and no longer pause the event loop
            for tens of milliseconds under load (a process-wide change, hence
            off by default; see the performance guide).
        tracer_provider: an OpenTelemetry ``TracerProvider`` for task spans;
            default: the global one, when configured.
    """

    def __init__(
        self,
        *,
        database_url: str | None = None,
        snapshot_db: str | None = None,
        snapshot_backend: SnapshotBackend | str | None = None,
        snapshot_interval: float = 60.0,
        requeue_pending: bool = False,
        merged_list_ttl: float = 5.0,
        loggers: list[Any] | None = None,
        log_file: str | None = None,
        log_file_max_bytes: int = 10 * 1024 * 1024,
        log_file_backup_count: int = 5,
        log_file_mode: str = "rotate",
        log_lifecycle: bool = False,
        encrypt_args_key: bytes | str | list[bytes | str] | None = None,
        max_concurrent_tasks: int | None = None,
        max_sync_threads: int | None = None,
        max_process_workers: int | None = None,
        process_shutdown_timeout: float = 30.0,
        retention_days: float | None = None,
        create_tables: bool | None = None,
        write_buffer_size: int = 10_000,
        commit_interval: float | None = None,
        lease_seconds: float = 20.0,
        heartbeat_interval: float | None = None,
        poll_interval: float = 1.0,
        shutdown_grace: float = 10.0,
        acknowledge: AcknowledgeMode = "committed",
        acknowledge_timeout: float = 10.0,
        freeze_gc_at_startup: bool = False,
        tracer_provider: Any = None,
    ) -> None:
        url = choose_database_url(database_url, snapshot_backend, snapshot_db)
        self.target: DatabaseTarget = resolve_database_url(url)
        check_positive("write_buffer_size", write_buffer_size)
        check_positive("lease_seconds", lease_seconds)
        check_positive("poll_interval", poll_interval)
        heartbeat_interval = heartbeat_interval_for(lease_seconds, heartbeat_interval)
        check_not_negative("shutdown_grace", shutdown_grace)
        check_choice("acknowledge", acknowledge, ACKNOWLEDGE_MODES)
        check_positive("acknowledge_timeout", acknowledge_timeout)
        check_limits(
            max_concurrent_tasks=max_concurrent_tasks,
            max_sync_threads=max_sync_threads,
            max_process_workers=max_process_workers,
        )
        check_not_negative("process_shutdown_timeout", process_shutdown_timeout)
        if create_tables is None:
            create_tables = self.target.backend == "sqlite"
        self.create_tables = create_tables
        self.snapshot_interval = snapshot_interval
        self.requeue_pending = requeue_pending
        self.merged_list_ttl = merged_list_ttl
        self.loggers = list(loggers or [])
        self.log_file = log_file
        self.log_file_options = {
            "max_bytes": log_file_max_bytes,
            "backup_count": log_file_backup_count,
            "mode": log_file_mode,
            "log_lifecycle": log_lifecycle,
        }
        self.max_concurrent_tasks = max_concurrent_tasks
        self.max_sync_threads = max_sync_threads
        self.max_process_workers = max_process_workers
        self.process_shutdown_timeout = process_shutdown_timeout
        self.tracer_provider = tracer_provider
        self.retention_days = retention_days
        self.write_buffer_size = write_buffer_size
        self.commit_interval = commit_interval_for(self.target, commit_interval)
        self.lease_seconds = lease_seconds
        self.heartbeat_interval = heartbeat_interval
        self.poll_interval = poll_interval
        self.shutdown_grace = shutdown_grace
        self.acknowledge_mode: AcknowledgeMode = acknowledge
        self.acknowledge_timeout = acknowledge_timeout
        if not isinstance(freeze_gc_at_startup, bool):
            raise ConfigurationError(
                f"freeze_gc_at_startup must be True or False, got {freeze_gc_at_startup!r}"
            )
        self.freeze_gc_at_startup = freeze_gc_at_startup
        self.fernet = None if encrypt_args_key is None else build_cipher(encrypt_args_key)
        self.logger: LoggerChain | None = build_observers(
            self.loggers, log_file, self.log_file_options
        )
        self.registry = TaskRegistry()
        self.instance_id = new_instance_id()
        self.repository: TaskRepository = create_repository(self.target)
        self._writer: GroupCommitWriter | None = None
        self._runner: TaskRunner | None = None
        self._dispatcher: Dispatcher | None = None
        self._executors: dict[str, Executor] = {}
        self._local: dict[str, LocalTask] = {}
        self._background: set[asyncio.Task[Any]] = set()
        # Runner tasks leave ``_background`` themselves; one cancelled before its
        # first step never runs that code, so the set is swept when it has grown.
        self._sweep_background_at = BACKGROUND_SWEEP_MIN
        # After-response tasks waiting for their row's commit, by commit: one
        # callback per commit starts them all.
        self._starts_by_commit: dict[asyncio.Future[Any], list[LocalTask]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._started = False
        self._stopping = False
        # Past the shutdown grace: no attempt starts any more.
        self._releasing = False
        self._apps: set[int] = set()
        self._inject_apps: set[int] = set()
        self._lifecycle_hooks: list[tuple[Callable[[], None], Callable[[], None]]] = []
        self._services: list[Service] = []
        self._scheduler: PeriodicScheduler | None = None
        self.retention: RetentionService | None = None
        if retention_days is not None:
            self.retention = RetentionService(self.repository, retention_days)
            self._services.append(self.retention)
        self._dependency: Callable[[BackgroundTasks], ManagedBackgroundTasks] | None = None
        self._memory_keys = MemoryKeys()
        # Live dashboard streams listen here; the writer notifies after each commit.
        self.changes = ChangeFeed()
        self._remote_changes: RemoteChanges | None = None
        self._connector: DatabaseConnector | None = None
        # The bridge runs its own loop, which needs connections of its own.
        self._bridge = BlockingBridge(lambda: create_repository(self.target, connections=2))

    # -- registration --------------------------------------------------------

    def task(
        self,
        *,
        retries: int = 0,
        delay: float = 0.0,
        backoff: float = 1.0,
        persist: bool = False,
        name: str | None = None,
        requeue_on_interrupt: bool = False,
        eager: bool = False,
        priority: int | None = None,
        executor: ExecutorName | None = None,
        timeout: float | None = None,
        max_delay: float | None = None,
        jitter: JitterName | None = None,
        retry_on: ExceptionTypes | None = None,
        dont_retry_on: ExceptionTypes | None = None,
    ) -> Callable[[F], F]:
        """Register a function as a managed task; it is returned unchanged.

        Retry ``n + 1`` waits ``delay * backoff ** n`` seconds, at most ``max_delay``,
        spread by ``jitter`` (``"full"``/``"equal"``); ``retry_on`` (default: every
        exception) and ``dont_retry_on`` (which wins) choose the errors retried.

        Raises:
            RegistrationError: invalid values, an executor that does not fit the
                function, or a name already used by another function.
        """
        config = TaskConfig(
            retries=retries,
            delay=delay,
            backoff=backoff,
            persist=persist,
            name=name,
            requeue_on_interrupt=requeue_on_interrupt,
            eager=eager,
            priority=priority,
            executor=executor,
            timeout=timeout,
            max_delay=max_delay,
            jitter=jitter,
            retry_on=retry_on,
            dont_retry_on=dont_retry_on,
        )

        def decorator(func: F) -> F:
            self.registry.register(func, config)
            return func

        return decorator

    def schedule(
        self,
        *,
        every: float | timedelta | None = None,
        cron: str | None = None,
        retries: int = 0,
        delay: float = 0.0,
        backoff: float = 1.0,
        name: str | None = None,
        run_on_startup: bool = False,
        timezone: str = "UTC",
        executor: ExecutorName | None = None,
        catch_up: CatchUp = "once",
        max_delay: float | None = None,
        jitter: JitterName | None = None,
        retry_on: ExceptionTypes | None = None,
        dont_retry_on: ExceptionTypes | None = None,
    ) -> Callable[[F], F]:
        """Register a function that runs every ``every`` seconds or on a ``cron`` expression.

        Each slot fires exactly once, however many instances share the
        database; the function is also a normal task that ``add_task()`` can
        enqueue by hand.  After downtime a missed schedule fires once
        (``catch_up="all"``: once per missed slot).  ``cron`` is read in
        ``timezone`` and needs ``pip install "taskflow-sql[scheduler]"``.  Each
        firing retries as ``@task_manager.task()`` says for the same options.

        Raises:
            RegistrationError: not exactly one of ``every`` / ``cron``, ``every <= 0``,
                a malformed cron expression, an unknown timezone, or invalid task settings.
            MissingDependencyError: ``cron`` without croniter installed.
        """
        trigger = make_trigger(every=every, cron=cron, timezone=timezone)
        policy = check_catch_up(catch_up)
        config = TaskConfig(
            retries=retries,
            delay=delay,
            backoff=backoff,
            name=name,
            executor=executor,
            max_delay=max_delay,
            jitter=jitter,
            retry_on=retry_on,
            dont_retry_on=dont_retry_on,
        )

        def decorator(func: F) -> F:
            target = self.registry.register(func, config)
            entry = ScheduledEntry(target, trigger, bool(run_on_startup), policy)
            self._periodic().add(entry)
            return func

        return decorator

    async def list_schedules(self) -> list[ScheduleState]:
        """Every schedule in the database (any instance's), with next run, last run and paused."""
        return await self.repository.list_schedules()

    async def pause_schedule(self, name: str) -> ScheduleState:
        """Stop firing schedule ``name`` on every instance until ``resume_schedule(name)``.

        Raises:
            ScheduleNotFoundError: no schedule has that name.
        """
        return await self._periodic().set_paused(name, True)

    async def resume_schedule(self, name: str) -> ScheduleState:
        """Fire schedule ``name`` again, from its next slot after now (missed runs are skipped).

        Raises:
            ScheduleNotFoundError: no schedule has that name.
        """
        return await self._periodic().set_paused(name, False)

    def _periodic(self) -> PeriodicScheduler:
        scheduler = self._scheduler
        if scheduler is None:
            scheduler = self._scheduler = PeriodicScheduler(
                self.repository, cipher=self.fernet, on_fired=self._wake_threadsafe
            )
            self.add_service(scheduler)
            loop = self._loop
            if self._started and loop is not None and not loop.is_closed():
                # Added while running: start it now rather than at the next startup.
                loop.call_soon_threadsafe(lambda: self.spawn(scheduler.start()))
        return scheduler

    # -- enqueueing ----------------------------------------------------------

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
    ) -> LocalTask | str:
        """Validate a call, create its row (buffered for commit) and hold it locally.

        Returns the ``LocalTask`` to dispatch, or, when ``idempotency_key``
        belongs to a live task already, that task's id (and nothing is
        created).  Safe to call from the event loop or from a worker thread.
        """
        local = self._prepare(func, args, kwargs, idempotency_key, tags, priority, source)
        if self._keyed_in_database(local):
            holder = self._insert_with_key_blocking(local.record)
        else:
            holder = self._key_holder_in_memory(local)
        if holder != local.record.task_id:
            return holder
        self._register(local)
        return local

    def _key_holder_in_memory(self, local: LocalTask) -> str:
        """The task holding the key when the database is in memory (else ``local``'s own id)."""
        if local.record.idempotency_key is None:
            return local.record.task_id
        return self._memory_keys.settle(local.record)

    def _prepare(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        idempotency_key: str | None,
        tags: dict[str, Any] | None,
        priority: int | None,
        source: TaskSource,
    ) -> LocalTask:
        self._require_started()
        target = self.registry.for_function(func)
        record = self._record_for(
            target, args, kwargs, idempotency_key, tags, priority, owner=self.instance_id
        )
        if source is not TaskSource.MANUAL:  # new_record's default
            record.source = source.value
        local = LocalTask(record=record, target=target, args=args, kwargs=kwargs)
        local.context = contextvars.copy_context()
        return local

    def _keyed_in_database(self, local: LocalTask) -> bool:
        # A store no other process sees: the key map is ours.
        return local.record.idempotency_key is not None and not self.repository.is_process_private

    def _register(self, local: LocalTask) -> None:
        """Hold the task locally; hand its row to the writer unless it is committed already."""
        writer, loop = self._writer, self._loop
        assert writer is not None and loop is not None
        committed = self._keyed_in_database(local)
        if self._on_loop_thread():
            if not committed:
                local.inserted = writer.insert(local.record)
            self._local[local.record.task_id] = local
            return
        if not committed:
            writer.check_capacity()
        local.accepted = False
        loop.call_soon_threadsafe(self._accept_from_thread, local, committed)

    def _accept_from_thread(self, local: LocalTask, committed: bool) -> None:
        assert self._writer is not None
        if not committed:
            try:
                local.inserted = self._writer.insert(local.record)
            except BackpressureError:
                # Already promised to the caller: accept it past the limit, never drop it.
                local.inserted = self._writer.insert(local.record, force=True)
        self._local[local.record.task_id] = local
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
            return self._bridge.call(lambda repository: repository.insert_with_key(record))
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
        if self._database_problem() is not None:
            raise DatabaseUnavailableError(_UNAVAILABLE)

    async def enqueue(
        self,
        func: Callable[..., Any],
        /,
        *args: Any,
        idempotency_key: str | None = None,
        tags: dict[str, Any] | None = None,
        priority: int | None = None,
        session: Any = None,
        **kwargs: Any,
    ) -> str:
        """Create a task and return its id once its row is committed; it runs in the background.

        With ``idempotency_key``, returns the id of the live task holding the
        key if there is one, and creates nothing.  With ``session`` (an
        ``AsyncSession`` or ``Session`` on the same database), the row is added
        to that session's transaction instead: the task exists when, and only
        if, the caller commits, and then any instance may run it.

        Raises:
            CommitTimeoutError: the row was not committed within
                ``acknowledge_timeout`` (the database is away); the task was
                not created.  A route gets 503 with ``Retry-After``.
            WriterStoppedError: taskflow shut down first; not created either.
        """
        if session is not None:
            return await self._enqueue_in_session(
                session, func, args, kwargs, idempotency_key, tags, priority
            )
        local = self._prepare(
            func, args, kwargs, idempotency_key, tags, priority, TaskSource.MANUAL
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
        self.dispatch(local, hurry=True)
        if local.inserted is not None:
            assert self._writer is not None
            await confirm_enqueued(local, self._writer, self.acknowledge_timeout, self._forget)
        return local.record.task_id

    def add_to_session(
        self, session: Any, func: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> str:
        """Add a task to a synchronous SQLAlchemy ``Session``'s transaction; returns its id.

        The task exists when, and only if, the session commits; then any
        instance runs it (this one is woken at once).
        """
        target = self.registry.for_function(func)
        # No owner: whichever instance claims it after the caller's commit runs it.
        record = self._record_for(target, args, kwargs, None, None, None, owner=None)
        return self.repository.add_to_transaction_sync(session, record, self._wake_threadsafe)

    async def _enqueue_in_session(
        self,
        session: Any,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        idempotency_key: str | None,
        tags: dict[str, Any] | None,
        priority: int | None,
    ) -> str:
        target = self.registry.for_function(func)
        record = self._record_for(target, args, kwargs, idempotency_key, tags, priority, owner=None)
        return await self.repository.add_to_transaction(session, record, self._wake_threadsafe)

    def _record_for(
        self,
        target: RegisteredTask,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        idempotency_key: str | None,
        tags: dict[str, Any] | None,
        priority: int | None,
        *,
        owner: str | None,
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
            cipher=self.fernet,
            idempotency_key=idempotency_key,
            tags=tags,
            priority=priority,
            max_argument_bytes=self.repository.max_argument_bytes,
        )

    def _wake_threadsafe(self) -> None:
        dispatcher, loop = self._dispatcher, self._loop
        if dispatcher is None or loop is None or loop.is_closed():
            return
        if self._on_loop_thread():
            dispatcher.wake()
        else:
            loop.call_soon_threadsafe(dispatcher.wake)

    async def _wait_accepted(self, local: LocalTask) -> None:
        # Only rows submitted from a worker thread wait here, for one loop turn.
        while not local.accepted:
            await asyncio.sleep(0)

    def dispatch(
        self, local: LocalTask, after: LocalTask | None = None, *, hurry: bool = False
    ) -> None:
        """Run a submitted task in the background once its row is committed.

        ``after``: an earlier task of the same request whose first attempt
        must be over first, so one request's tasks run in the order added,
        as FastAPI runs them.  ``hurry``: commit the row now rather than at
        the next group commit (the task is meant to start at once).
        Callable from any thread.
        """
        if not self._on_loop_thread():
            assert self._loop is not None
            self._loop.call_soon_threadsafe(
                functools.partial(self.dispatch, local, after, hurry=hurry)
            )
            return
        if local.dispatched:
            return  # handed over already (by its request's end, or by drain())
        local.dispatched = True
        if hurry and self._writer is not None:
            local.urgent = True
            self._writer.hurry()
        inserted = local.inserted
        if after is None and local.accepted and inserted is not None and not inserted.done():
            # Started by the commit rather than started to wait for it: one
            # asyncio step less per task, and no task object while it waits.
            waiting = self._starts_by_commit.get(inserted)
            if waiting is None:
                self._starts_by_commit[inserted] = [local]
                inserted.add_done_callback(self._start_committed)
            else:
                waiting.append(local)
            return
        self._spawn_local(local, after)

    def _start_committed(self, commit: asyncio.Future[Any]) -> None:
        for local in self._starts_by_commit.pop(commit, ()):
            if self._releasing:
                # It stays pending and is released for another instance; a plain
                # task queued after it in its request must not wait for it.
                local.mark_settled()
                continue
            try:
                self._spawn_local(local, None)
            except Exception:
                # One task that cannot start (a task factory refusing it) must
                # not keep the others of its commit from starting.  Its row stays
                # pending under its lease; when that expires, recovery runs it.
                logger.exception("taskflow could not start task %s", local.record.task_id)
                self._local.pop(local.record.task_id, None)
                local.mark_settled()

    def _spawn_local(self, local: LocalTask, after: LocalTask | None) -> None:
        # Not ``spawn()``: the runner task leaves ``_background`` itself and
        # logs its own failure, which saves a done-callback (an event-loop
        # step) per task.
        task = _create_task(self._run_local(local, after), local.context)
        if task.done():
            return  # finished in create_task (an eager task factory); a retry set its own handle
        local.handle = task
        background = self._background
        background.add(task)
        if len(background) >= self._sweep_background_at:
            self._sweep_background()

    async def hand_off(self, local: LocalTask, after: LocalTask | None = None) -> None:
        """What FastAPI runs after the response: hand the task over and return.

        The request does not wait for the commit or the task, so many
        requests' rows share one commit.  When the writer is due, one yield
        to the event loop gives it (and the tasks it releases) a turn, even
        when requests arrive back to back without any I/O wait.
        """
        self.dispatch(local, after)
        if self._writer is not None and self._writer.overdue():
            await asyncio.sleep(0)

    async def _run_local(self, local: LocalTask, after: LocalTask | None) -> None:
        # Not ``local.handle``, which a retry replaces with its own task.
        this_task = asyncio.current_task()
        try:
            if after is not None:
                await after.wait_settled()
            await self._wait_accepted(local)
            assert self._runner is not None
            await self._runner.run(local)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("taskflow background job failed")
        finally:
            if this_task is not None:
                self._background.discard(this_task)

    def _sweep_background(self) -> None:
        # In place: shutdown holds this very set while it waits for the tasks in it.
        self._background.difference_update([task for task in self._background if task.done()])
        self._sweep_background_at = max(BACKGROUND_SWEEP_MIN, 2 * len(self._background))

    def _accepting(self) -> bool:
        return not self._releasing

    def _stop_starting(self) -> None:
        self._releasing = True

    def spawn(
        self, coro: Coroutine[Any, Any, Any], context: contextvars.Context | None = None
    ) -> asyncio.Task[Any]:
        """Run ``coro`` as a background task owned (and awaited at shutdown) by the manager.

        With ``context``, the task runs in a copy of it (the request's context vars).
        """
        task = _create_task(coro, context)
        self._background.add(task)
        task.add_done_callback(self._background_done)
        return task

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("taskflow background job failed", exc_info=task.exception())

    # -- reading -------------------------------------------------------------

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
        writer = self._writer
        if writer is None or not writer.pending or writer.failing or not self._on_loop_thread():
            return  # failing: read what is committed rather than wait for the outage
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
        await cancel_task(
            task_id,
            held=self._local,
            repository=self.repository,
            writer=self._writer,
            runner=self._runner,
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
        self._wake_threadsafe()
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

    async def drain(self) -> None:
        """Wait until every local task has finished and its final state is committed.

        Tasks added through a ``ManagedBackgroundTasks`` that nothing will run
        (made outside a request, in an app without ``init_app()``) are
        started first, so this returns for them too.
        """
        for local in list(self._local.values()):
            if not local.dispatched and local.accepted:
                self.dispatch(local)
        while self._local or any(not t.done() for t in self._background):
            await asyncio.sleep(0.001)
        await self.flush()

    async def flush(self) -> None:
        """Wait until every write made so far is committed."""
        if self._writer is not None:
            await self._writer.flush()

    # -- lifecycle -----------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether ``startup()`` has completed and ``shutdown()`` has not run since."""
        return self._started

    async def startup(self) -> None:
        """Start the writer, dispatcher and services, connecting first (schema where configured).

        A PostgreSQL or MySQL database that cannot be reached does not fail
        the start: the instance starts, ``readiness()`` says why it is not
        ready, and it connects in the background as soon as the database
        answers.  Until then a request that adds a task waits up to
        ``acknowledge_timeout`` and gets 503.  Errors that waiting cannot cure
        (a schema from a newer taskflow) still fail the start, as does any
        error on SQLite.
        """
        if self._started:
            return
        # A fresh identity per start: a restarted manager is a new instance to
        # the others, and rows of its previous life are recovered like any.
        self.instance_id = new_instance_id()
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if self.logger is not None:
            await self.logger.startup()
        self._build_runtime()
        self._stopping = False
        self._releasing = False
        self._started = True
        # A local file: an error opening it is a configuration error.
        tolerant = not self.repository.is_local
        self._connector = DatabaseConnector(
            self._reach_database,
            self._go_live,
            is_transient=self.repository.is_transient if tolerant else _never_transient,
        )
        try:
            await self._connector.start(wait=STARTUP_CONNECT_WAIT_S)
        except BaseException:
            await self._abandon_start()
            raise
        if not self._connector.connected:
            assert self._writer is not None
            self._writer.set_unreachable(True)
        for start_hook, _stop_hook in self._lifecycle_hooks:
            start_hook()
        if self.freeze_gc_at_startup:
            freeze_startup_heap()

    def _build_runtime(self) -> None:
        """The executors, writer, runner and dispatcher of this start; none of them runs yet."""
        self._executors = {
            "async": AsyncExecutor(self.max_concurrent_tasks),
            "thread": ThreadExecutor(self.max_sync_threads),
            "process": ProcessExecutor(self.max_process_workers),  # starts no process yet
        }
        on_fenced = functools.partial(drop_fenced, self._local)
        self._writer = GroupCommitWriter(
            self.repository,
            max_buffer=self.write_buffer_size,
            commit_interval=self.commit_interval,
            on_fenced=on_fenced,
            is_transient=self.repository.is_transient,
            changes=self.changes,
            lease=timedelta(seconds=self.lease_seconds),
        )
        self.changes.open()
        self._runner = TaskRunner(
            self._writer,
            self._executors,
            spawn=self.spawn,
            on_finished=self._on_finished,
            lease_seconds=self.lease_seconds,
            accepting=self._accepting,
            events=self.logger,
            tracer=task_tracer(self.tracer_provider),
        )
        self._dispatcher = Dispatcher(
            self.repository,
            describe_instance(self.instance_id),
            on_claimed=self._adopt,
            capacity=functools.partial(room_to_adopt, self._local),
            start_slots={name: self._executors[name].slots for name in self._started_by_claim()},
            on_started=self._adopt,
            held=functools.partial(held_epochs, self._local),
            on_lost=on_fenced,
            lease_seconds=self.lease_seconds,
            heartbeat_interval=self.heartbeat_interval,
            poll_max=self.poll_interval,
        )

    async def _reach_database(self) -> None:
        """Everything startup needs of the database; safe to run again after a failure."""
        try:
            # Bounded: a server that accepts the connection and never answers
            # would hang the attempt for good (MySQL's handshake has no timeout).
            await asyncio.wait_for(self.repository.open(), OPEN_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise TimeoutError(f"the database did not answer within {OPEN_TIMEOUT_S:g}s") from None
        problem = await self.repository.prepare_schema(migrate=self.create_tables)
        if problem is not None:
            logger.warning("taskflow: %s", problem)
        assert self._writer is not None and self._dispatcher is not None
        self._writer.set_unreachable(False)
        # Before the instance registers: its first claims hand the writer work.
        self._writer.start()
        await self._dispatcher.start()

    async def _go_live(self) -> None:
        """What runs once the database is reached: change notices and services."""
        self._remote_changes = RemoteChanges(self.repository, self.instance_id, self.changes)
        await self._remote_changes.start()
        for service in self._services:
            await service.start()

    async def _abandon_start(self) -> None:
        """Undo a start that failed: nothing of it may keep running."""
        self._started = False
        if await self._stop_connecting() and self._dispatcher is not None:
            with contextlib.suppress(Exception):
                await self._dispatcher.stop()
        if self._writer is not None:
            await self._writer.stop()
        if self.logger is not None:
            await self.logger.close()

    def readiness(self) -> Readiness:
        """Whether this instance can take tasks now, and if not, why (for a readiness probe).

        Not ready: before ``startup()`` and from ``shutdown()`` on; until the
        database is first reached; while heartbeats, claims or writes fail.
        """
        if not self._started:
            return Readiness(False, "taskflow is not started")
        if self._stopping:
            return Readiness(False, "taskflow is shutting down")
        problem = self._database_problem()
        return Readiness(problem is None, problem)

    def _database_problem(self) -> str | None:
        """Why the database cannot be counted on now (not yet reached, failing), or None."""
        connector, dispatcher, writer = self._connector, self._dispatcher, self._writer
        if connector is not None and not connector.connected:
            return connector.reason or "connecting to the database"
        if dispatcher is not None and not dispatcher.reachable:
            return "the database is unreachable: heartbeats and claims fail"
        if writer is not None and writer.failing:
            return "the database is not accepting writes"
        return None

    async def shutdown(self) -> None:
        """Stop claiming, run what was accepted (``shutdown_grace``), record the rest.

        Like FastAPI's own background tasks, the tasks of the last requests
        still run.  Tasks still running after the grace period become
        ``interrupted`` (or go back to ``pending`` for any instance when their
        function has ``requeue_on_interrupt=True``); tasks not started by
        then, and retries not yet due, are released so another instance, or
        the next start, runs them.
        """
        if not self._started:
            return
        self._stopping = True
        connected = await self._stop_connecting()
        self.changes.close()  # end live streams first: they hold connections open
        if self._remote_changes is not None:
            with contextlib.suppress(Exception):  # only a notice channel
                await self._remote_changes.stop()
            self._remote_changes = None
        if connected:  # else no service was started
            await self._stop_services()
        if self._dispatcher is not None:
            await self._dispatcher.stop_claiming()  # heartbeats go on through the grace
        if self._writer is not None:
            self._writer.stop_napping()
        await finish_running_tasks(
            self._local,
            self._background,
            # Never connected: nothing started (a start waits for its commit), nothing will.
            shutdown_grace=self.shutdown_grace if connected else 0.0,
            process_shutdown_timeout=self.process_shutdown_timeout,
            stop_starting=self._stop_starting,
        )
        if self._dispatcher is not None and connected:
            await self._dispatcher.stop()
        await self._release_and_stop_writer(connected)
        await self._close_executors()
        if self.logger is not None:
            await self.logger.close()
        await asyncio.to_thread(self._bridge.close)
        await self.repository.close()
        for _start_hook, stop_hook in reversed(self._lifecycle_hooks):
            stop_hook()
        self._started = False

    async def _close_executors(self) -> None:
        for executor in self._executors.values():
            try:  # never blocks the loop: stuck threads are left, stuck processes killed
                await executor.close()
            except Exception:
                logger.exception("taskflow %s executor failed to close", executor.name)

    async def _release_and_stop_writer(self, connected: bool) -> None:
        """Write down every task still held, commit what the writer holds, and stop it."""
        writer = self._writer
        assert writer is not None
        released = release_held(self._local, writer, self._runner)
        if connected or not writer.pending:
            await writer.stop()
        else:  # never started: what it holds cannot be written (the error says how much)
            await writer.stop(timeout=0.0)
        if released and connected:
            with contextlib.suppress(Exception):  # polling picks them up regardless
                await self.repository.announce_work()

    async def _stop_connecting(self) -> bool:
        """Stop trying to reach the database; returns whether it was reached."""
        connector = self._connector
        if connector is None:
            return True
        await connector.stop()
        return connector.connected

    async def _stop_services(self) -> None:
        for service in reversed(self._services):
            try:
                await service.stop()
            except Exception:  # one failing service must not skip the rest of shutdown
                logger.exception("taskflow service %r failed to stop", service)

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

    def add_service(self, service: Service) -> None:
        """Run ``service.start()`` after every startup and ``service.stop()`` first at shutdown.

        For parts that live as long as the manager runs (the scheduler).  A
        service added while the manager runs is started by the next startup.
        """
        self._services.append(service)

    def add_lifecycle_hooks(self, start: Callable[[], None], stop: Callable[[], None]) -> None:
        """Call ``start`` at every startup (now too, if started) and ``stop`` at every shutdown."""
        self._lifecycle_hooks.append((start, stop))
        if self._started:
            start()

    def _on_finished(self, local: LocalTask) -> None:
        self._local.pop(local.record.task_id, None)

    def _adopt(self, records: list[TaskRecord], slots: Slots | None = None) -> None:
        """Hold the rows a claim took; ``slots``: their claim also recorded the start."""
        # A method rather than a partial: each claim uses the registry and cipher of now.
        assert self._writer is not None
        adopt_claimed(
            records,
            started_with=slots,
            held=self._local,
            registry=self.registry,
            cipher=self.fernet,
            writer=self._writer,
            runner=self._runner,
            dispatch=self.dispatch,
        )

    def _started_by_claim(self) -> list[str]:
        """The executors whose claims also record the start (see the dispatcher).

        Only those some registered function runs on, so an instance does not
        repeat a claim that cannot find anything.  Not process tasks: a worker
        process may have to start first, and that must not count as running.
        """
        used = {target.executor for target in self.registry}
        return [name for name in ("async", "thread") if name in used]

    def _require_started(self) -> asyncio.AbstractEventLoop:
        if not self._started or self._loop is None or self._writer is None:
            raise NotStartedError(
                "the TaskManager is not started, and a task must be written to the database "
                "before it can run: call task_manager.init_app(app) (TaskAdmin does it for you) "
                "or await task_manager.startup() in your lifespan; in tests, use "
                "`with TestClient(app) as client:` so that the app's lifespan runs"
            )
        if self._stopping:
            raise NotStartedError("the TaskManager is shutting down and accepts no new tasks")
        return self._loop

    def _on_loop_thread(self) -> bool:
        return threading.get_ident() == self._loop_thread

    # -- FastAPI glue (implemented in taskflow.web) ----------------------------

    @property
    def get_tasks(self) -> Callable[[BackgroundTasks], ManagedBackgroundTasks]:
        """FastAPI dependency: a ``ManagedBackgroundTasks`` sharing the request's task list.

        Use as ``tasks = Depends(task_manager.get_tasks)``; no ``install()`` needed.
        """
        if self._dependency is None:
            from taskflow.web.install import make_dependency

            self._dependency = make_dependency(self)
        return self._dependency

    @property
    def background_tasks(self) -> Callable[[BackgroundTasks], ManagedBackgroundTasks]:
        """Alias of ``get_tasks`` that reads well in ``Depends(task_manager.background_tasks)``."""
        return self.get_tasks

    def install(self, app: FastAPI | None = None) -> None:
        """Make plain ``BackgroundTasks`` annotations receive ``ManagedBackgroundTasks``."""
        from taskflow.web.install import install

        install(self, app)

    def readiness_router(self, path: str = "/ready") -> APIRouter:
        """A router for ``GET {path}``: 200 when ``readiness()`` says ready, else 503 and why.

        Use as ``app.include_router(task_manager.readiness_router())``.
        """
        from taskflow.web.readiness import create_readiness_router

        return create_readiness_router(self, path)

    def init_app(self, app: FastAPI) -> None:
        """Run ``startup()``/``shutdown()`` with the app's lifespan; safe to call twice.

        Also holds each of the app's responses until the tasks its request
        added are committed (``acknowledge="committed"``), and answers 503
        when the database cannot confirm them in time.
        """
        from taskflow.web.install import add_acknowledgement, add_error_handlers, wrap_lifespan

        if id(app) in self._apps:
            return
        self._apps.add(id(app))
        wrap_lifespan(self, app)
        add_error_handlers(app)
        add_acknowledgement(self, app)

    def inject_into(self, app: FastAPI) -> None:
        """Give ``app``'s plain ``BackgroundTasks`` annotations this manager (see ``install``)."""
        self._inject_apps.add(id(app))

    def injects_into(self, app: Any) -> bool:
        """Whether ``install(app)`` made ``app``'s plain ``BackgroundTasks`` managed."""
        return id(app) in self._inject_apps

    @property
    def serves_requests(self) -> bool:
        """Whether some app's requests pass this manager's hold (``init_app()`` ran)."""
        return bool(self._apps)

    # -- acknowledgement (logic in taskflow.runtime.acknowledgement) ------------

    async def acknowledge(self, receipt: Receipt) -> Refusal | None:
        """Wait until the receipt's new tasks are committed; None, or why they are not."""
        tasks = receipt.tasks[receipt.acknowledged :]
        receipt.acknowledged = len(receipt.tasks)
        writer = self._writer
        if self.acknowledge_mode == "buffered" or writer is None:
            return None
        return await wait_committed(tasks, writer, self.acknowledge_timeout, self._forget)

    def settle_request(self, receipt: Receipt, status_code: int | None) -> None:
        """After a request: tasks FastAPI never ran are run (success) or cancelled."""
        settle_request(
            receipt,
            status_code,
            dispatch=self.dispatch,
            forget=self._forget,
            writer=self._writer,
        )

    def _forget(self, local: LocalTask) -> None:
        self._local.pop(local.record.task_id, None)


def _create_task(
    coro: Coroutine[Any, Any, Any], context: contextvars.Context | None
) -> asyncio.Task[Any]:
    """A task on the running loop, in ``context`` when given (the request's context vars)."""
    loop = asyncio.get_running_loop()
    if context is None:
        return loop.create_task(coro)
    if sys.version_info >= (3, 11):
        # The context is this task's private copy already (made at add_task).
        return loop.create_task(coro, context=context)
    return context.run(loop.create_task, coro)


_UNAVAILABLE = (
    "taskflow cannot reach its database, where a task with an idempotency key is "
    "written at once: the task was not created; retry later"
)


def _unavailable(exc: Exception) -> DatabaseUnavailableError:
    return DatabaseUnavailableError(f"{_UNAVAILABLE} ({type(exc).__name__})")
