"""``TaskManager``: the composition root applications configure, and the facade they call.

It validates the options, builds the registry, the repository (through
``repository.factory``), the held tasks and the submission path, and at
each start the runtime (``runtime.assembly``).  Its documented methods come
in groups from ``taskflow.facade``; the ones defined here are the per-task
path, which delegates without extra layers because it runs for every request.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, ParamSpec

from taskflow.backends import SnapshotBackend, choose_database_url
from taskflow.deprecations import warn_unneeded
from taskflow.exceptions import ConfigurationError
from taskflow.facade.admin import AdminMethods
from taskflow.facade.enqueueing import EnqueueOptions, EnqueueWithOptions, take_options
from taskflow.facade.fastapi_glue import FastAPIMethods
from taskflow.facade.lifecycle import LifecycleMethods
from taskflow.facade.one_off import OneOffMethods
from taskflow.facade.registration import RegistrationMethods
from taskflow.facade.waiting import WaitMethods
from taskflow.models import TaskSource, utcnow
from taskflow.observe.setup import build_observers
from taskflow.options import (
    check_choice,
    check_limits,
    check_not_negative,
    check_positive,
    commit_interval_for,
    heartbeat_interval_for,
)
from taskflow.registry import TaskRegistry
from taskflow.repository.factory import create_repository
from taskflow.runtime.acknowledgement import ACKNOWLEDGE_MODES, AcknowledgeMode
from taskflow.runtime.assembly import RuntimeSettings
from taskflow.runtime.bridge import BlockingBridge
from taskflow.runtime.changes import ChangeFeed
from taskflow.runtime.holdings import MAX_ADOPTED as MAX_ADOPTED  # still importable from here
from taskflow.runtime.instance import new_instance_id
from taskflow.runtime.local_tasks import LocalTasks
from taskflow.runtime.retention import RetentionService
from taskflow.runtime.runner import LocalTask
from taskflow.runtime.submission import Submission
from taskflow.runtime.timing import due_time
from taskflow.security import build_cipher
from taskflow.settings import DatabaseTarget, resolve_database_url

P = ParamSpec("P")


class TaskManager(
    RegistrationMethods,
    AdminMethods,
    OneOffMethods,
    WaitMethods,
    LifecycleMethods,
    FastAPIMethods,
):
    """Registers task functions, persists every task, and runs them in this process.

    Args:
        database_url: any SQLAlchemy URL; plain ``postgresql://``, ``mysql://`` and
            ``sqlite:///`` URLs get their async driver.  Defaults to
            ``TASKFLOW_DATABASE_URL``, else an in-memory SQLite database.
        snapshot_db / snapshot_backend: fastapi-taskflow's ways to name the
            database (a SQLite path, or a backend object / URL).
        snapshot_interval / requeue_pending / merged_list_ttl: fastapi-taskflow
            options that have no effect here; each one given warns
            (``DeprecationWarning``) with the reason.
        create_tables: run the migrations (Redis: write the data-format version) at
            startup; default True for SQLite and Redis.
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
        snapshot_interval: float | None = None,
        requeue_pending: bool | None = None,
        merged_list_ttl: float | None = None,
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
        warn_unneeded(
            {
                "snapshot_interval": snapshot_interval,
                "requeue_pending": requeue_pending,
                "merged_list_ttl": merged_list_ttl,
            },
            stacklevel=2,
        )
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
        # fastapi-taskflow's attributes, kept readable; nothing reads them here.
        self.snapshot_interval = 60.0 if snapshot_interval is None else snapshot_interval
        self.requeue_pending = bool(requeue_pending)
        self.merged_list_ttl = 5.0 if merged_list_ttl is None else merged_list_ttl
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
        self.logger = build_observers(self.loggers, log_file, self.log_file_options)
        self.registry = TaskRegistry()
        self.instance_id = new_instance_id()
        self.repository = create_repository(self.target)
        if create_tables is None:
            create_tables = self.repository.prepares_itself
        self.create_tables = create_tables
        # This start's executors, writer, runner and dispatcher (None before the first).
        self.runtime = None
        self.local_tasks = LocalTasks()
        # The bridge runs its own loop, which needs connections of its own.
        self._bridge = BlockingBridge(lambda: create_repository(self.target, connections=2))
        self.submission = Submission(
            registry=self.registry,
            repository=self.repository,
            tasks=self.local_tasks,
            bridge=self._bridge,
            database_problem=self.database_problem,
        )
        self._loop = None
        self._started = False
        self._stopping = False
        self._apps = set()
        self._inject_apps = set()
        self._lifecycle_hooks = []
        self._services = []
        self._scheduler = None
        self.retention = None
        if retention_days is not None:
            self.retention = RetentionService(self.repository, retention_days)
            self._services.append(self.retention)
        self._dependency = None
        # Set by taskflow.testing.inline_tasks(): each request ends with drain().
        self.drain_after_requests = False
        # Live dashboard streams listen here; the writer notifies after each commit.
        self.changes = ChangeFeed()
        self._remote_changes = None
        self._connector = None

    def runtime_settings(self) -> RuntimeSettings:
        """The options a start builds its runtime with, as they are now (tests tune them)."""
        return RuntimeSettings(
            max_concurrent_tasks=self.max_concurrent_tasks,
            max_sync_threads=self.max_sync_threads,
            max_process_workers=self.max_process_workers,
            write_buffer_size=self.write_buffer_size,
            commit_interval=self.commit_interval,
            lease_seconds=self.lease_seconds,
            heartbeat_interval=self.heartbeat_interval,
            poll_interval=self.poll_interval,
        )

    # -- the per-task path -----------------------------------------------------

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

        Returns the ``LocalTask`` to ``dispatch()``, or, when ``idempotency_key``
        belongs to a live task already, that task's id (and nothing is
        created).  Safe to call from the event loop or from a worker thread.
        """
        return self.submission.submit(
            func,
            args,
            kwargs,
            idempotency_key=idempotency_key,
            tags=tags,
            priority=priority,
            source=source,
        )

    def dispatch(
        self, local: LocalTask, after: LocalTask | None = None, *, hurry: bool = False
    ) -> None:
        """Run a submitted task once its row is committed (after ``after``'s first attempt)."""
        self.local_tasks.dispatch(local, after, hurry=hurry)

    async def hand_off(self, local: LocalTask, after: LocalTask | None = None) -> None:
        """What FastAPI runs after the response: hand the task over and return."""
        await self.local_tasks.hand_off(local, after)

    async def enqueue(self, func: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> str:
        """Create a task and return its id once its row is committed; it runs in the background.

        Type checkers check the arguments against ``func``'s signature.  The
        options ``idempotency_key=``, ``tags=``, ``priority=``, ``session=``,
        ``run_at=`` and ``delay=`` are taken from the keyword arguments at run
        time; typed code passes them through ``with_options()``.  ``run_at=``
        / ``delay=``: the task is due then, and whichever instance finds it
        due runs it (see ``ManagedBackgroundTasks.add_task``).

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
        options = take_options(func, kwargs)
        return await self._enqueue_with(func, args, kwargs, options)

    def with_options(
        self,
        *,
        idempotency_key: str | None = None,
        tags: dict[str, Any] | None = None,
        priority: int | None = None,
        session: Any = None,
        run_at: datetime | None = None,
        delay: float | timedelta | None = None,
    ) -> EnqueueWithOptions:
        """``enqueue()`` with options, kept apart from the task's own arguments.

        ``await task_manager.with_options(idempotency_key=k).enqueue(send_email, address=a)``
        """
        options = EnqueueOptions(idempotency_key, tags, priority, session, run_at, delay)
        return EnqueueWithOptions(self, options)

    async def _enqueue_with(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: EnqueueOptions,
    ) -> str:
        # The work of enqueue(), with the task's arguments and options apart.
        key, tags, priority = options.idempotency_key, options.tags, options.priority
        run_at = due_time(options.run_at, options.delay, utcnow())
        if options.session is not None:
            return await self.submission.add_to_transaction(
                options.session, func, args, kwargs, key, tags, priority, self.wake, run_at
            )
        return await self.submission.enqueue(
            func, args, kwargs, key, tags, priority, self.acknowledge_timeout, run_at
        )

    def add_to_session(
        self, session: Any, func: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs
    ) -> str:
        """Add a task to a synchronous SQLAlchemy ``Session``'s transaction; returns its id.

        The task exists when, and only if, the session commits; then any
        instance runs it (this one is woken at once).
        """
        return self.submission.add_to_transaction_sync(session, func, args, kwargs, self.wake)
