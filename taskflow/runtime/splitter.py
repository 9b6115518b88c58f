"""Applying a refused group commit in parts, so that one bad write fails alone.

A batch the database refuses for its data (a value a column rejects), or
that keeps failing while the database answers other statements (MariaDB
drops the connection on an oversized packet, exactly as an outage would), is
cut in halves, and each half applied on its own, down to single writes.
Every good write is then committed, and a write that cannot be is dealt
with alone, after a bounded number of attempts:

* a task's state change becomes a ``failed`` row saying why, since a task
  left ``pending`` or ``running`` would run again after every restart and
  stick again;
* a log line is stored once more with its text cleaned and its extra fields
  left out, then dropped;
* a new row is reported rejected: its task does not run, and a request
  waiting for it is answered with an error.

While the database does not answer at all (an outage), nothing is counted:
the parts are retried as the whole batch would be, for as long as it lasts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from taskflow.models import TaskLogEntry, TaskRecord, TaskStatus, utcnow
from taskflow.repository.base import BatchOutcome, TaskRepository, WriteBatch
from taskflow.storable import storable_text

logger = logging.getLogger("taskflow.writer")

# Attempts of one part while the database answers, before it counts as refused.
MAX_ATTEMPTS = 3
_REASON_CHARS = 300  # a driver's message can quote the whole statement and its values
_PROBE_ID = "00000000-0000-0000-0000-000000000000"

TransientCheck = Callable[[BaseException], bool]


@dataclass
class _Result:
    fenced: set[str] = field(default_factory=set)
    rejected: set[str] = field(default_factory=set)


def reason_of(exc: BaseException) -> str:
    """A short, storable account of a refusal (the driver's message, not the statement)."""
    original = getattr(exc, "orig", None) or exc
    return storable_text(f"{type(original).__name__}: {original}", _REASON_CHARS)


def failed_instead(record: TaskRecord, exc: BaseException) -> TaskRecord:
    """The state to write when ``record``'s own cannot be: ``failed``, with why, nothing else."""
    now = utcnow()
    failed = record.snapshot()
    failed.error = (
        f"taskflow could not store this task's {record.status.value} state, so it is "
        f"marked failed: the database refused it ({reason_of(exc)})"
    )
    failed.status = TaskStatus.FAILED
    failed.stacktrace = None
    failed.result = None
    failed.end_time = record.end_time or now
    failed.updated_at = now
    failed.owner = None
    failed.lease_expires_at = None
    return failed


def _cleaned_line(entry: TaskLogEntry) -> TaskLogEntry:
    return TaskLogEntry(
        entry.task_id,
        entry.attempt,
        entry.level,
        storable_text(entry.message),
        entry.created_at,
        {},
        entry.entry_id,
    )


def _halves(batch: WriteBatch) -> tuple[WriteBatch, WriteBatch]:
    # In order (inserts, updates, logs): a log line's task row must be written first.
    middle = len(batch) // 2
    return _slice(batch, 0, middle), _slice(batch, middle, len(batch))


def _slice(batch: WriteBatch, start: int, stop: int) -> WriteBatch:
    # Writes start..stop of the batch, counted across its three lists in order.
    inserts, updates = len(batch.inserts), len(batch.updates)

    def within(offset: int) -> slice:
        return slice(max(start - offset, 0), max(stop - offset, 0))

    return WriteBatch(
        inserts=batch.inserts[within(0)],
        updates=batch.updates[within(inserts)],
        logs=batch.logs[within(inserts + updates)],
    )


class BatchSplitter:
    """Applies a refused batch in ever smaller parts; see the module docstring."""

    def __init__(
        self,
        repository: TaskRepository,
        is_transient: TransientCheck,
        *,
        retry_initial: float,
        retry_max: float,
    ) -> None:
        self._repository = repository
        self._is_transient = is_transient
        self._retry_initial = retry_initial
        self._retry_max = retry_max

    async def answers(self) -> bool:
        """Whether the database answers a plain read now (else: an outage, not a bad write)."""
        try:
            await self._repository.get_task(_PROBE_ID, with_logs=False)
        except asyncio.CancelledError:
            raise
        except Exception:
            return False
        return True

    async def apply(self, batch: WriteBatch, first: BaseException) -> BatchOutcome:
        """Apply ``batch``, which failed with ``first``, in parts; report what did not apply."""
        logger.error(
            "taskflow batch of %d writes refused (%s); applying it in parts",
            len(batch),
            reason_of(first),
        )
        result = _Result()
        if len(batch) == 1:
            await self._single(batch, first, result)
        else:
            for half in _halves(batch):
                await self._part(half, result)
        return BatchOutcome(frozenset(result.fenced), frozenset(result.rejected))

    async def _part(self, part: WriteBatch, result: _Result) -> None:
        error = await self._attempt(part)
        if isinstance(error, BatchOutcome):
            result.fenced |= error.fenced
            result.rejected |= error.rejected
        elif len(part) == 1:
            await self._single(part, error, result)
        else:
            for half in _halves(part):
                await self._part(half, result)

    async def _attempt(self, part: WriteBatch) -> BatchOutcome | BaseException:
        """Apply ``part`` until done, refused, or failing too often though the database answers.

        Returns the outcome, or the last error.
        """
        delay = self._retry_initial
        failures = 0
        while True:
            try:
                return await self._repository.apply(part)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._is_transient(exc):
                    return exc
                if await self.answers():
                    failures += 1
                    if failures >= MAX_ATTEMPTS:
                        return exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)

    async def _single(self, part: WriteBatch, error: BaseException, result: _Result) -> None:
        logger.error("taskflow write refused by the database: %s", reason_of(error))
        if part.inserts:
            # Its task must not run, and whoever waits for the row must hear of it.
            result.rejected.update(r.task_id for r in part.inserts)
        elif part.updates:
            record = part.updates[0]
            # Whoever holds the task stops: what it holds is not what is stored.
            result.fenced.add(record.task_id)
            await self._instead(WriteBatch(updates=[failed_instead(record, error)]), result)
        else:
            await self._instead(WriteBatch(logs=[_cleaned_line(part.logs[0])]), result)

    async def _instead(self, part: WriteBatch, result: _Result) -> None:
        outcome = await self._attempt(part)
        if isinstance(outcome, BatchOutcome):
            result.fenced |= outcome.fenced
        else:
            logger.error("taskflow could not store even a cleaned write: %s", reason_of(outcome))
