"""The group-commit writer: every task transition durable, without a commit per transition.

Callers hand it records and log lines and go on; one loop applies whatever
has accumulated in a single transaction, and while that transaction is in
flight the next batch fills up.  Under load many tasks share one commit;
when idle a lone write is committed at once.  Records are held by reference,
so several changes of one task before a flush coalesce into its last state.

Under load the writer waits up to ``commit_interval`` after its previous
commit, so that a commit's fixed cost is shared by more tasks.  A caller that
waits on a commit (``enqueue()``, a read that must see this instance's own
writes, shutdown) calls ``flush()``, which cuts that wait short.

What becomes of a sealed batch while the database fails, hangs or refuses
it (retries, stall detection, splitting) is in ``runtime/batch_attempts.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from taskflow.exceptions import BackpressureError, WriterStoppedError
from taskflow.models import TaskLogEntry, TaskRecord
from taskflow.repository.base import BatchOutcome, TaskRepository, WriteBatch
from taskflow.runtime.batch_attempts import BatchAttempts
from taskflow.runtime.changes import ChangeFeed

logger = logging.getLogger("taskflow.writer")

FencedCallback = Callable[[frozenset[str]], None]
# At most this many event-loop turns for ready requests to join a commit.
MAX_JOIN_TURNS = 8
TransientCheck = Callable[[BaseException], bool]


def _always_transient(_exc: BaseException) -> bool:
    return True


def _abandon(commit: asyncio.Future[BatchOutcome]) -> None:
    # Whoever waits on a commit that will never happen must wake up, and know it.
    if not commit.done():
        commit.set_exception(WriterStoppedError("taskflow stopped before this write was committed"))
        commit.exception()  # marked retrieved: there may be nobody left to wait


def _wake(nap: asyncio.Future[None]) -> None:
    if not nap.done():
        nap.set_result(None)


def _changed_ids(batch: WriteBatch) -> set[str]:
    ids = {record.task_id for record in batch.inserts}
    ids.update(record.task_id for record in batch.updates)
    ids.update(entry.task_id for entry in batch.logs)
    return ids


class GroupCommitWriter(BatchAttempts):
    """Buffers inserts, guarded updates and logs; commits them in batches."""

    def __init__(
        self,
        repository: TaskRepository,
        *,
        max_buffer: int = 10_000,
        on_fenced: FencedCallback | None = None,
        is_transient: TransientCheck = _always_transient,
        retry_initial: float = 0.05,
        retry_max: float = 2.0,
        lease: timedelta | None = None,
        commit_interval: float = 0.002,
        stall_after: float = 5.0,
        changes: ChangeFeed | None = None,
    ) -> None:
        self._repository = repository
        self._max_buffer = max_buffer
        self._max_batch = 1000
        self._on_fenced = on_fenced
        self._is_transient = is_transient
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._lease = lease
        self._commit_interval = commit_interval
        self._stall_after = stall_after
        self._changes = changes
        self._apply_started: float | None = None
        # Resolved when the attempt now talking to the database ends.
        self._attempt_over: asyncio.Future[None] | None = None
        self._stall_reported = False
        self._last_commit = 0.0
        self._urgent = False
        self._inserts: dict[str, TaskRecord] = {}
        self._updates: dict[str, TaskRecord] = {}
        self._logs: list[TaskLogEntry] = []
        self._commit: asyncio.Future[BatchOutcome] | None = None
        self._in_flight_commit: asyncio.Future[BatchOutcome] | None = None
        self._in_flight = 0
        self._nap: asyncio.Future[None] | None = None
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failing_since: float | None = None
        self._thread_id: int | None = None
        self.dropped_logs = 0

    # -- submission (event-loop thread unless noted) -----------------------

    @property
    def pending(self) -> int:
        """Writes accepted but not yet committed."""
        return len(self._inserts) + len(self._updates) + len(self._logs) + self._in_flight

    def overdue(self) -> bool:
        """Whether buffered writes have waited longer than the commit interval.

        Callers that never yield to the event loop (back-to-back requests
        served in-process) use it to yield only when the writer needs a turn.
        """
        if self._commit is None:
            return False
        loop = asyncio.get_running_loop()
        return loop.time() - self._last_commit >= self._commit_interval

    def insert(self, record: TaskRecord, *, force: bool = False) -> asyncio.Future[BatchOutcome]:
        """Queue a new row; the returned future resolves when it is committed.

        Refused only while the database is failing and the buffer is full (or
        at ten times the buffer size, whatever the cause): a burst on a healthy
        database is absorbed by the next commits.
        """
        if not force:
            self.check_capacity()
        self._inserts[record.task_id] = record
        if len(self._inserts) >= self._max_batch:
            self.hurry()
        return self._next_commit()

    def check_capacity(self) -> None:
        """Raise ``BackpressureError`` if a new row would not be accepted; changes nothing.

        Safe from any thread (it only reads), so sync routes can be refused
        before anything is queued for them.
        """
        failing = self._failing_since is not None or self._stalled()
        limit = self._max_buffer if failing else self._max_buffer * 10
        waiting = self.pending
        if waiting < limit:
            return
        reason = (
            "the database is not accepting writes"
            if failing
            else "the database is accepting writes more slowly than tasks arrive"
        )
        raise BackpressureError(
            f"taskflow's write buffer is full ({waiting} writes waiting): {reason}. The task "
            "was not enqueued; retry later (raise write_buffer_size to ride out longer outages)"
        )

    async def attempt_ended(self, timeout: float) -> None:
        """Wait (at most ``timeout``) until no write attempt is talking to the database.

        Between attempts the batch being retried is converted anew, so a
        change made to one of its records now is what the next attempt writes.
        """
        over = self._attempt_over
        if over is not None:
            await asyncio.wait({over}, timeout=timeout)

    def discard(self, task_id: str) -> bool:
        """Drop a buffered new row before it is written; False if it is on its way already."""
        return self._inserts.pop(task_id, None) is not None

    def update(self, record: TaskRecord) -> asyncio.Future[BatchOutcome]:
        """Queue the record's current state; never refused, since it must not be lost."""
        if record.task_id not in self._inserts:
            self._updates[record.task_id] = record
        return self._next_commit()

    def log(self, entry: TaskLogEntry) -> None:
        """Queue a log line; callable from any thread."""
        if self._loop is not None and threading.get_ident() != self._thread_id:
            self._loop.call_soon_threadsafe(self.log, entry)
            return
        if self.pending >= self._max_buffer * 2:
            self.dropped_logs += 1
            if self.dropped_logs == 1 or self.dropped_logs % 1000 == 0:
                logger.warning("write buffer full: %d task log lines dropped", self.dropped_logs)
            return
        self._logs.append(entry)
        self._next_commit()

    def _next_commit(self) -> asyncio.Future[BatchOutcome]:
        if self._commit is None:
            self._commit = asyncio.get_running_loop().create_future()
            self._wakeup.set()
        return self._commit

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._thread_id = threading.get_ident()
            self._task = self._loop.create_task(self._run(), name="taskflow-writer")

    def hurry(self) -> None:
        """Commit what is buffered now, without waiting out the commit interval."""
        self._urgent = True
        self._wakeup.set()
        if self._nap is not None and not self._nap.done():
            self._nap.set_result(None)

    def stop_napping(self) -> None:
        """Commit whatever is buffered as soon as the previous commit is done, from now on.

        For shutdown: the tasks still running there must not wait out the
        interval for their commits.
        """
        self._commit_interval = 0.0
        self.hurry()

    async def flush(self) -> None:
        """Wait until everything submitted so far is committed (now, not at the next tick).

        Writes submitted while it waits are not waited for: under steady load
        the buffer never empties, and a caller that wants its own writes
        committed must not wait for everyone else's.
        """
        waiting_for = self._commit
        if waiting_for is not None:
            self.hurry()
        else:
            waiting_for = self._in_flight_commit  # being committed already: no need to hurry
            if waiting_for is None:
                return
        # wait() neither cancels the shared commit nor raises if it was cancelled.
        await asyncio.wait({waiting_for})

    @property
    def failing(self) -> bool:
        """Whether the database is refusing writes or a commit has hung (see ``check_capacity``)."""
        return self._failing_since is not None or self._stalled()

    def set_unreachable(self, unreachable: bool) -> None:
        """Count the database as failing (or not) before any write has tried it.

        For a start without the database, while the writer waits to be
        started: the buffer then holds ``max_buffer`` writes, as in any outage.
        """
        self._failing_since = asyncio.get_running_loop().time() if unreachable else None

    async def _flush_all(self) -> None:
        while self._commit is not None or self._in_flight_commit is not None:
            await self.flush()

    async def stop(self, timeout: float = 10.0) -> None:
        """Flush what is buffered (for at most ``timeout`` seconds), then stop.

        A writer that never started (its database was never reached) has
        nobody to commit for it: waiting would only hold the shutdown.
        """
        if self._task is None:
            if self.pending:
                logger.error("taskflow writer stopped with %d writes not committed", self.pending)
        else:
            try:
                await asyncio.wait_for(self._flush_all(), timeout)
            except asyncio.TimeoutError:
                logger.error("taskflow writer stopped with %d writes not committed", self.pending)
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._commit is not None:
            _abandon(self._commit)
            self._commit = None

    # -- the loop ------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            # Commit at once when idle; under load, at most once per interval,
            # so that many tasks share each commit.
            wait = self._last_commit + self._commit_interval - loop.time()
            if wait > 0 and not self._urgent and self.pending < self._max_batch:
                await self._nap_for(loop, wait)
            self._urgent = False
            await self._let_ready_writers_join()
            while self._commit is not None:
                batch = WriteBatch(
                    inserts=list(self._inserts.values()),
                    updates=[record.snapshot() for record in self._updates.values()],
                    logs=self._logs,
                )
                commit = self._commit
                self._inserts, self._updates, self._logs = {}, {}, []
                self._commit = None
                self._in_flight = len(batch)
                self._in_flight_commit = commit
                try:
                    outcome = await self._apply_until_done(batch)
                except asyncio.CancelledError:
                    _abandon(commit)  # stopped mid-commit (stop() timed out)
                    raise
                finally:
                    self._in_flight = 0
                    self._in_flight_commit = None
                self._last_commit = loop.time()
                if not commit.done():
                    commit.set_result(outcome)
                if outcome.fenced and self._on_fenced is not None:
                    self._on_fenced(outcome.fenced)
                if self._changes is not None and self._changes.listening:
                    self._changes.notify(_changed_ids(batch))

    async def _let_ready_writers_join(self) -> None:
        """Give the coroutines that are ready to run a turn before sealing the batch.

        Requests being served on this loop reach their ``add_task()`` and
        their wait for the commit within a turn or two; letting them is what
        fills a commit when a waiting client hurried the writer.  It costs
        nothing measurable (no clock involved) and stops as soon as a turn
        adds nothing.
        """
        for _turn in range(MAX_JOIN_TURNS):
            before = self.pending
            await asyncio.sleep(0)
            if self.pending == before:
                return

    async def _nap_for(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        # An asyncio.sleep that hurry() can end early.
        nap = self._nap = loop.create_future()
        timer = loop.call_later(seconds, _wake, nap)
        try:
            await nap
        finally:
            timer.cancel()
            self._nap = None
