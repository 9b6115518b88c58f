"""``TaskRepository``: the async interface every storage backend implements.

The runtime (runner, writer, dispatcher, scheduler) talks only to this
interface.  Every method that changes a task is guarded: the caller names the
``lease_epoch`` it believes in, and the backend reports whether that still held.
The admin API's own records (audit log, sessions, login attempts) are the
inherited part of the interface, in ``taskflow.repository.admin``.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime
from typing import Any

from taskflow.exceptions import TaskArgumentError
from taskflow.models import TaskLogEntry, TaskMetrics, TaskRecord, TaskStatus
from taskflow.repository.admin import AdminRecords
from taskflow.repository.one_off import OneOffRecords
from taskflow.repository.values import (
    AdminSession,
    BatchOutcome,
    InstanceInfo,
    InstanceStatus,
    LoginAttempts,
    ReplayPage,
    RetryCopy,
    RetrySource,
    TaskPage,
    TaskQuery,
    WriteBatch,
)
from taskflow.schedules import FireOutcome, ScheduleDefinition, ScheduleState

# The value types (and AdminRecords) are importable from here too, next to the interface.
__all__ = [
    "AdminRecords",
    "AdminSession",
    "BatchOutcome",
    "InstanceInfo",
    "InstanceStatus",
    "LoginAttempts",
    "ReplayPage",
    "RetryCopy",
    "RetrySource",
    "TaskPage",
    "TaskQuery",
    "TaskRepository",
    "WriteBatch",
]


class TaskRepository(OneOffRecords, AdminRecords):
    """Async storage of tasks, logs and their bookkeeping.

    The audit log, dashboard sessions and login attempts are declared in
    ``AdminRecords`` (``taskflow.repository.admin``), which this inherits;
    ``schedule_once()``'s run keys in ``OneOffRecords`` (``repository.one_off``).
    """

    #: The most bytes one task's stored arguments may take (known once opened):
    #: ``add_task()`` refuses larger ones, naming this limit.
    max_argument_bytes: int = 64 * 1024 * 1024

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect (``prepare_schema`` comes next, at start)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every connection."""

    # -- questions the composition root asks ------------------------------------

    @abc.abstractmethod
    async def prepare_schema(self, *, migrate: bool) -> str | None:
        """Make the store ready for this version of taskflow at start, once opened.

        With ``migrate`` (``TaskManager(create_tables=True)``), bring the schema
        up to date: for SQL, run the migrations.  Without it the schema is
        someone else's job, so only check it: raise ``ConfigurationError``
        (one line, with the fix) when this taskflow cannot run on it, and
        return what is worth a warning, or None.  Called on every start, by
        several processes at once: must be idempotent and race-free.
        """

    @abc.abstractmethod
    def is_transient(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a lost connection, timeout or lock wait rather than bad data.

        The writer retries a batch that failed transiently and splits one that
        failed on its data; startup waits for a store that is away; a keyed
        ``add_task()`` answers "unavailable".  Only the backend can tell which
        of its driver's errors mean what.
        """

    @property
    def parallel_claims(self) -> int:
        """How many claims that start tasks an instance may have in flight at once.

        More than one pays where a claim costs the store little and its
        round trip is what keeps slots empty (Redis).  On the SQL databases
        measured here, concurrent claims competed for the same index and
        CPU, and a burn-down ran about a third slower, so they claim one at
        a time.
        """
        return 1

    @property
    def prepares_itself(self) -> bool:
        """Whether ``create_tables`` defaults to True: setting up touches nothing of the user's.

        True for a SQLite file and for Redis; a PostgreSQL or MySQL schema is
        often managed by the application's own Alembic, so there it is opt-in.
        """
        return False

    @property
    def is_local(self) -> bool:
        """Whether the store is local to this machine (a file), not a server that may be down.

        Failing to open a local store is a configuration error, raised at
        start; a server is waited for in the background instead.
        """
        return False

    @property
    def is_process_private(self) -> bool:
        """Whether no other process can see this store (an in-memory SQLite database).

        Then no other instance can hold an idempotency key, and the manager
        decides keys in memory instead of inserting keyed rows at once.
        """
        return False

    async def add_to_transaction(
        self, session: Any, record: TaskRecord, on_commit: Callable[[], None]
    ) -> str:
        """Add ``record`` inside the caller's own open transaction; returns the id holding its key.

        For ``enqueue(..., session=...)``: the task exists exactly when the
        caller commits, and ``on_commit`` then runs.  ``session`` is the
        backend's own transaction object (for SQL, a SQLAlchemy
        ``AsyncSession`` or ``Session``).

        Raises:
            TaskArgumentError: ``session`` is nothing this backend can join.
        """
        raise TaskArgumentError(f"{type(self).__name__} cannot join a caller's transaction")

    def add_to_transaction_sync(
        self, session: Any, record: TaskRecord, on_commit: Callable[[], None]
    ) -> str:
        """``add_to_transaction`` for a synchronous caller (``add_to_session()``)."""
        raise TaskArgumentError(f"{type(self).__name__} cannot join a caller's transaction")

    # -- tasks -------------------------------------------------------------------

    @abc.abstractmethod
    async def apply(self, batch: WriteBatch) -> BatchOutcome:
        """Write a whole batch atomically; report updates rejected by their epoch guard."""

    @abc.abstractmethod
    async def get_task(self, task_id: str, *, with_logs: bool = True) -> TaskRecord | None:
        """One task with its rendered log lines, or None."""

    @abc.abstractmethod
    async def get_logs(self, task_id: str) -> list[TaskLogEntry]:
        """A task's log lines in the order they were written."""

    @abc.abstractmethod
    async def list_tasks(self, query: TaskQuery) -> TaskPage:
        """A page of tasks, newest first, continuing after ``query.cursor``."""

    @abc.abstractmethod
    async def metrics(self) -> TaskMetrics:
        """Counts by status, success rate and per-function durations, aggregated by the store."""

    @abc.abstractmethod
    async def transition(
        self,
        task_id: str,
        *,
        expected_status: Sequence[TaskStatus],
        expected_epoch: int | None,
        status: TaskStatus,
        error: str | None = None,
        bump_epoch: bool = True,
    ) -> bool:
        """Move one task to ``status`` if it is still in ``expected_status`` (and epoch).

        Out-of-band changes (cancel from the API, recovery) bump the epoch so
        that the instance running the task is fenced out.  True if it applied.
        """

    @abc.abstractmethod
    async def claim(
        self,
        owner: str,
        *,
        now: datetime,
        lease_until: datetime,
        limit: int,
        take_expired: bool = True,
        start_executor: str | None = None,
        leave_to_start: Collection[str] = (),
    ) -> list[TaskRecord]:
        """Atomically take up to ``limit`` tasks no live instance holds.

        Those are due pending tasks nobody owns and, with ``take_expired``,
        tasks whose owner's lease expired: pending ones, and running ones
        (their instance died mid-attempt).  A caller passes ``take_expired``
        only once it has itself reached the store for a whole lease: after
        an outage that every instance saw, every lease looks expired, and an
        owner that is alive must first get the chance to renew its leases or
        withdraw what it promised a client would not exist.  Each
        claimed row gets ``owner``, a new lease and ``lease_epoch + 1``
        (fencing out the previous owner); it keeps its status, so the caller
        decides what a dead attempt becomes.
        Two instances calling this concurrently never receive the same row.

        ``start_executor``: take only due pending tasks whose ``executor`` is
        this one, and record their start in the same write (``running``,
        ``start_time = now``), for a caller that holds a free slot for each
        and calls the functions at once: the start costs no second commit,
        and a crash after this one leaves rows that say ``running``.
        ``leave_to_start``: executors whose pending tasks a claim without
        ``start_executor`` leaves alone, because the caller takes them with
        ``start_executor`` when it has room to start them.
        """

    @abc.abstractmethod
    async def heartbeat(
        self, instance: InstanceInfo, *, lease_until: datetime, held: Collection[str]
    ) -> int:
        """Record the instance as alive and renew the leases of the tasks it holds.

        ``held``: the ids of the tasks this instance holds and whose rows are
        committed.  Only those of its active rows are renewed: a row it names
        as owner but no longer holds (its final write never landed) must be
        left to expire, so that another instance takes it.  A few statements
        renew every lease, whatever the number of tasks.  Returns how many
        task leases were renewed.
        """

    @abc.abstractmethod
    async def register_instance(self, instance: InstanceInfo) -> None:
        """Insert (or refresh) the instance's row."""

    @abc.abstractmethod
    async def deregister_instance(self, instance_id: str, *, now: datetime) -> None:
        """Mark the instance stopped."""

    @abc.abstractmethod
    async def list_instances(self, *, alive_since: datetime | None = None) -> list[InstanceInfo]:
        """Instances, newest heartbeat first; only those seen since ``alive_since`` if given."""

    @abc.abstractmethod
    async def insert_with_key(self, record: TaskRecord) -> str:
        """Insert a task that has an idempotency key, unless the key is taken.

        Returns the id of the task that holds the key: ``record``'s own id
        when it was inserted, else the existing task's.  A failed task frees
        its key.  Race-free across processes.
        """

    async def listen(self, on_wake: Callable[[], None]) -> Callable[[], Awaitable[None]] | None:
        """Call ``on_wake`` when another instance announces unowned work.

        Returns a coroutine function that stops listening, or None where the
        store has no such channel (then polling alone finds the work).
        """
        return None

    async def announce_work(self) -> None:
        """Tell listening instances that unowned work was just committed."""
        return None

    async def listen_changes(
        self, instance_id: str, on_change: Callable[[], None]
    ) -> Callable[[], Awaitable[None]] | None:
        """Call ``on_change`` when another instance commits task changes.

        Live dashboards then re-read their page at once instead of at their
        next poll.  Returns a coroutine function that stops listening, or None
        where the store has no such channel (polling alone then finds them).
        """
        return None

    @abc.abstractmethod
    async def lost_tasks(self, owner: str, held: dict[str, int]) -> set[str]:
        """Of the tasks this instance holds (id -> lease_epoch), those it no longer holds.

        A task is lost when another instance took it over, or it was cancelled
        or otherwise changed by someone else (its epoch moved on).
        """

    # -- schedules (SQL: repository/sql/schedules) ----------------------------
    @abc.abstractmethod
    async def sync_schedule(
        self,
        definition: ScheduleDefinition,
        *,
        first_run_at: datetime,
        now: datetime,
        run_now_unless_fired_since: datetime | None = None,
    ) -> ScheduleState:
        """Create the schedule's row, or bring its trigger up to date; return the row.

        A new row (or a changed trigger) gets ``first_run_at``.  ``paused`` and
        a ``next_run_at`` another instance set are kept.  With
        ``run_now_unless_fired_since``, the next run is brought forward to
        ``now`` unless the schedule fired since then (``run_on_startup``).
        """

    @abc.abstractmethod
    async def fire_schedule(
        self,
        name: str,
        *,
        slot: datetime,
        next_run_at: datetime,
        record: TaskRecord,
        now: datetime,
    ) -> FireOutcome:
        """Fire ``slot`` if it is still the schedule's next run and not paused.

        In one transaction: move ``next_run_at`` from ``slot`` to
        ``next_run_at`` (compare-and-swap) and insert ``record``, whose
        ``(schedule_name, scheduled_for)`` is unique.  Any number of instances
        may call this for the same slot: exactly one gets ``FIRED``.
        """

    @abc.abstractmethod
    async def get_schedule(self, name: str) -> ScheduleState | None:
        """One schedule with the status of its last task, or None."""

    @abc.abstractmethod
    async def list_schedules(self) -> list[ScheduleState]:
        """Every schedule by name, with the status of its last task."""

    @abc.abstractmethod
    async def set_schedule_paused(
        self, name: str, paused: bool, *, resume_at: datetime | None, now: datetime
    ) -> ScheduleState | None:
        """Pause or resume a schedule for every instance; None when it does not exist.

        Resuming moves a next run that passed during the pause to ``resume_at``.
        """

    @abc.abstractmethod
    async def delete_finished_before(self, cutoff: datetime, *, batch: int = 1000) -> int:
        """Delete terminal tasks (and their logs) that finished before ``cutoff``; returns how many.

        Never touches pending or running tasks.
        """

    # -- retries (SQL: repository/sql/retries) --------------------------------
    @abc.abstractmethod
    async def retry_sources(self, task_ids: Sequence[str]) -> list[RetrySource]:
        """The tasks among ``task_ids`` that exist, in no particular order."""

    @abc.abstractmethod
    async def replay_candidates(self, page: ReplayPage) -> list[RetrySource]:
        """The tasks on ``page``."""

    @abc.abstractmethod
    async def retried_ids(self, task_ids: Sequence[str]) -> set[str]:
        """The ids among ``task_ids`` that some task is a retry of."""

    @abc.abstractmethod
    async def retry_origins(self, task_ids: Sequence[str]) -> dict[str, str | None]:
        """Each existing task among ``task_ids`` with the id it is a retry of (None: none)."""

    @abc.abstractmethod
    async def insert_retries(
        self, copies: Sequence[RetryCopy], *, now: datetime
    ) -> list[RetryCopy]:
        """Insert each copy as a new pending, unowned task, all in one transaction.

        The stored arguments, tags, priority and executor are copied by the
        store as they are (encrypted payloads stay encrypted); a copy whose
        original is gone or no longer failed/interrupted is skipped.  Returns
        the copies that were inserted.
        """
