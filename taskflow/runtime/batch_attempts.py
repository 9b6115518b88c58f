"""What the group-commit writer does with one sealed batch until the database takes it.

The writer's loop seals a batch and hands it here.  An outage is waited out,
retrying with a growing delay; a commit that hangs counts as a failure for
backpressure while it is allowed to finish; a batch the database refuses for
its data, or that keeps failing while the database answers, goes to the
splitter (``runtime/splitter.py``), so that one bad write fails alone.  Each
attempt first carries the batch's leases forward (when the writer has a lease).

``BatchAttempts`` is a base class of ``GroupCommitWriter`` rather than an
object it calls, so that the writer's hot path (``check_capacity()`` on every
new row asks ``_stalled()``) keeps calling its own methods, with no layer
added.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta
from itertools import chain

from taskflow.models import TaskStatus, utcnow
from taskflow.repository.base import BatchOutcome, TaskRepository, WriteBatch
from taskflow.runtime.splitter import BatchSplitter, TransientCheck, reason_of

logger = logging.getLogger("taskflow.writer")

# Failed attempts of a batch before asking whether the database answers at all.
SPLIT_AFTER = 3


def _renew_leases(batch: WriteBatch, until: datetime) -> None:
    """Carry the leases of a batch forward as it is written (this instance is alive).

    The batch's records were leased when they were made; written late (after
    an outage, or a long wait for a commit), those leases would already have
    run out, and another instance would take tasks over that this one is
    still running: the heartbeat renews them only in the database, and this
    write would set them back.  (A write that itself takes longer than a
    lease still can; PostgreSQL never moves a lease back.)
    """
    for record in chain(batch.inserts, batch.updates):
        expires = record.lease_expires_at
        if expires is not None and expires < until and record.status in _ACTIVE:
            record.lease_expires_at = until


_ACTIVE = (TaskStatus.PENDING, TaskStatus.RUNNING)


class BatchAttempts:
    """The failure handling of ``GroupCommitWriter``: retries, stall detection, splitting."""

    # Set by GroupCommitWriter.__init__.
    _repository: TaskRepository
    _is_transient: TransientCheck
    _retry_initial: float
    _retry_max: float
    _lease: timedelta | None
    _stall_after: float
    # The attempt now talking to the database: when it started, whether its
    # stall was logged, and a future resolved when it ends (attempt_ended()).
    _apply_started: float | None
    _stall_reported: bool
    _attempt_over: asyncio.Future[None] | None
    # Since when (loop time) the database has been failing, or None.
    _failing_since: float | None

    async def _apply_until_done(self, batch: WriteBatch) -> BatchOutcome:
        delay = self._retry_initial
        failures = 0
        while True:
            try:
                outcome = await self._apply_watching_for_stalls(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._is_transient(exc):
                    return await self._apply_one_by_one(batch, exc)
                failures += 1
                # Failing again and again while the database answers: a write of
                # this batch is the cause (MariaDB drops the connection on an
                # oversized packet), not an outage.
                if failures % SPLIT_AFTER == 0 and await self._splitter().answers():
                    return await self._apply_one_by_one(batch, exc)
                if self._failing_since is None:
                    self._failing_since = asyncio.get_running_loop().time()
                logger.warning(
                    "taskflow write failed (%s); retrying in %.2fs", reason_of(exc), delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)
            else:
                self._failing_since = None
                return outcome

    async def _apply_watching_for_stalls(self, batch: WriteBatch) -> BatchOutcome:
        # A database that stops answering raises nothing: a commit in flight for
        # longer than stall_after counts as a failure for backpressure (see
        # _stalled), while it is still allowed to finish.
        self._apply_started = time.monotonic()
        if self._lease is not None:
            _renew_leases(batch, utcnow() + self._lease)
        over = self._attempt_over = asyncio.get_running_loop().create_future()
        try:
            return await self._repository.apply(batch)
        finally:
            self._apply_started = None
            self._stall_reported = False
            self._attempt_over = None
            over.set_result(None)

    def _stalled(self) -> bool:
        started = self._apply_started
        if started is None or time.monotonic() - started < self._stall_after:
            return False
        if not self._stall_reported:
            self._stall_reported = True
            logger.warning("taskflow write has not finished after %.0fs", self._stall_after)
        return True

    async def _apply_one_by_one(self, batch: WriteBatch, first: Exception) -> BatchOutcome:
        # A write the database refuses must not block every other task: the
        # splitter applies the batch in parts, and each refused write alone.
        outcome = await self._splitter().apply(batch, first)
        self._failing_since = None  # the database answered: it is the data
        return outcome

    def _splitter(self) -> BatchSplitter:
        return BatchSplitter(
            self._repository,
            self._is_transient,
            retry_initial=self._retry_initial,
            retry_max=self._retry_max,
        )
