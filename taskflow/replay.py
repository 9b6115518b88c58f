"""Retrying failed tasks: one, a chosen list, or every failure in a time window.

A retry is a new task row (``source="retry"``, ``retried_from`` the
original) holding the original's stored arguments, copied by the database
without being decoded here, so encrypted arguments stay encrypted.  The rows
are pending and unowned: every instance's dispatcher claims and runs them
under its normal limits, as it does any work nobody holds.  Nothing here
starts a coroutine per retry, so replaying a hundred thousand failures costs
a bounded amount of memory: candidates are read a page at a time and
inserted ``RETRY_BATCH`` per transaction.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from taskflow.exceptions import (
    ConfigurationError,
    FunctionNotRegisteredError,
    InvalidTransitionError,
    TaskflowError,
    TaskNotFoundError,
)
from taskflow.ids import new_task_id
from taskflow.models import TaskStatus, utcnow
from taskflow.registry import TaskRegistry
from taskflow.repository.base import ReplayPage, RetryCopy, RetrySource, TaskRepository
from taskflow.serialization import ENCRYPTED_FORMAT

# Rows read and inserted per transaction: short transactions, bounded memory.
RETRY_BATCH = 500
# Most task ids one bulk-retry request may name.
MAX_BULK = 1000
# Most failures one retry-failed call looks at; narrow ``since``/``func_name`` for more.
MAX_REPLAY = 100_000
# Most (original, new) pairs a report lists; its counts stay exact.
MAX_RESULTS = 1000

REPLAYABLE = (TaskStatus.FAILED, TaskStatus.INTERRUPTED)
WINDOW = re.compile(r"([0-9]+)([mhd])")  # not \d: it matches every script's digits
UNIT = {"m": "minutes", "h": "hours", "d": "days"}


class InvalidWindowError(TaskflowError, ValueError):
    """A replay window is not ``<N>m``, ``<N>h``, ``<N>d`` or ``all``."""


def parse_window(since: str | timedelta | None) -> timedelta | None:
    """``"6h"`` -> 6 hours; ``"all"`` or None -> no lower bound.

    Raises:
        InvalidWindowError: anything else (``"6"``, ``"1.5h"``, ``"-1d"``...).
    """
    if since is None or isinstance(since, timedelta):
        return since
    if since == "all":
        return None
    match = WINDOW.fullmatch(since)
    if match is None:
        raise InvalidWindowError(
            f"since must be a number followed by m, h or d (e.g. 30m, 6h, 7d), or 'all'; "
            f"got {since!r}"
        )
    try:
        return timedelta(**{UNIT[match[2]]: int(match[1])})
    except (OverflowError, ValueError):  # longer than a timedelta holds: everything
        return None


def _cutoff(now: datetime, window: timedelta | None) -> datetime | None:
    if window is None:
        return None
    try:
        return now - window
    except OverflowError:  # before year 1: no lower bound
        return None


@dataclass
class RetryReport:
    """What a bulk retry or replay did: exact counts, and the first ``MAX_RESULTS`` pairs."""

    dispatched: int = 0
    skipped: int = 0
    results: list[tuple[str, str]] = field(default_factory=list)
    truncated: bool = False
    capped: bool = False

    def add(self, copy: RetryCopy) -> None:
        self.dispatched += 1
        if len(self.results) < MAX_RESULTS:
            self.results.append((copy.original_id, copy.new_task_id))
        else:
            self.truncated = True

    def to_dict(self) -> dict[str, Any]:
        """fastapi-taskflow's ``{dispatched, skipped, results}``, plus the two flags."""
        return {
            "dispatched": self.dispatched,
            "skipped": self.skipped,
            "results": [
                {"original_task_id": original, "new_task_id": new} for original, new in self.results
            ],
            "truncated": self.truncated,
            "capped": self.capped,
        }


class Replayer:
    """Creates retries of failed or interrupted tasks for one manager.

    Args:
        can_decrypt: whether this process holds an argument-encryption key;
            without one an encrypted task would only fail again.
        on_inserted: awaited after each committed batch, to wake dispatchers.
    """

    def __init__(
        self,
        repository: TaskRepository,
        registry: TaskRegistry,
        *,
        can_decrypt: bool,
        on_inserted: Callable[[], Awaitable[None]],
    ) -> None:
        self._repository = repository
        self._registry = registry
        self._can_decrypt = can_decrypt
        self._on_inserted = on_inserted
        self._retries_of: dict[str, int | None] = {}

    async def retry(self, task_id: str) -> str:
        """Retry one task; returns the new task's id.

        Raises:
            TaskNotFoundError: no task has that id.
            InvalidTransitionError: the task is not failed or interrupted.
            FunctionNotRegisteredError: its function cannot be resolved here.
            ConfigurationError: its arguments are encrypted and no key is configured.
        """
        found = await self._repository.retry_sources([task_id])
        if not found:
            raise TaskNotFoundError(f"no task has id {task_id!r}")
        source = found[0]
        if source.status not in REPLAYABLE:
            raise InvalidTransitionError(
                f"task {task_id} is {source.status.value}: only failed or interrupted tasks "
                "can be retried"
            )
        target = self._registry.resolve(source.func_name)  # raises, saying what to do
        if source.payload_format == ENCRYPTED_FORMAT and not self._can_decrypt:
            raise ConfigurationError(
                f"task {task_id} has encrypted arguments and this instance has no key: "
                "configure TaskManager(encrypt_args_key=...) with the key they were written with"
            )
        copy = RetryCopy(task_id, new_task_id(), target.config.retries)
        if not await self._repository.insert_retries([copy], now=utcnow()):
            raise TaskNotFoundError(f"task {task_id} was deleted while being retried")
        await self._on_inserted()
        return copy.new_task_id

    async def bulk(self, task_ids: Sequence[str]) -> RetryReport:
        """Retry each listed task that can be; the others are counted as skipped.

        Skipped: unknown ids, repeated ids, tasks not failed or interrupted,
        and tasks whose function (or key) this process lacks.
        """
        report = RetryReport()
        unique = list(dict.fromkeys(task_ids))
        report.skipped += len(task_ids) - len(unique)
        for start in range(0, len(unique), RETRY_BATCH):
            chunk = unique[start : start + RETRY_BATCH]
            found = {s.task_id: s for s in await self._repository.retry_sources(chunk)}
            copies = [c for c in (self._copy(found.get(tid)) for tid in chunk) if c is not None]
            report.skipped += len(chunk) - len(copies)
            await self._insert(copies, report)
        return report

    async def replay(
        self, since: str | timedelta | None, func_name: str | None = None
    ) -> RetryReport:
        """Retry every failed, then every interrupted, task created in the window, newest first.

        Only tasks created before the call are considered, so retries that
        fail during the replay are not replayed again.  At most
        ``MAX_REPLAY`` tasks are looked at; ``capped`` says more remained.

        Raises:
            InvalidWindowError: ``since`` is not ``<N>m|h|d`` or ``all``.
        """
        window = parse_window(since)
        started = utcnow()
        created_since = _cutoff(started, window)
        report = RetryReport()
        seen = 0
        for status in REPLAYABLE:
            after: RetrySource | None = None
            while True:
                room = MAX_REPLAY - seen
                page = await self._repository.replay_candidates(
                    ReplayPage(
                        status=status,
                        created_before=started,
                        created_since=created_since,
                        func_name=func_name,
                        after=after,
                        # Past the cap, one row tells whether anything was left out.
                        limit=min(RETRY_BATCH, room) if room > 0 else 1,
                    )
                )
                if room <= 0:
                    report.capped = report.capped or bool(page)
                    break
                if not page:
                    break
                seen += len(page)
                copies = [c for c in map(self._copy, page) if c is not None]
                report.skipped += len(page) - len(copies)
                await self._insert(copies, report)
                after = page[-1]
        return report

    async def _insert(self, copies: list[RetryCopy], report: RetryReport) -> None:
        if not copies:
            return
        inserted = await self._repository.insert_retries(copies, now=utcnow())
        report.skipped += len(copies) - len(inserted)
        for copy in inserted:
            report.add(copy)
        if inserted:
            await self._on_inserted()

    def _copy(self, source: RetrySource | None) -> RetryCopy | None:
        """The retry to create for ``source``, or None when it must be skipped."""
        if source is None or source.status not in REPLAYABLE:
            return None
        if source.payload_format == ENCRYPTED_FORMAT and not self._can_decrypt:
            return None
        max_retries = self._max_retries(source.func_name)
        if max_retries is None:
            return None
        return RetryCopy(source.task_id, new_task_id(), max_retries)

    def _max_retries(self, func_name: str) -> int | None:
        """The function's current ``retries`` setting, or None when it cannot be resolved.

        The retry runs with today's settings of the function, as a new call
        would; the answer is cached for the length of one request.
        """
        if func_name not in self._retries_of:
            try:
                target = self._registry.resolve(func_name)
            except FunctionNotRegisteredError:
                self._retries_of[func_name] = None
            else:
                self._retries_of[func_name] = target.config.retries
        return self._retries_of[func_name]
