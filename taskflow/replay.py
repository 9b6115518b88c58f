"""Retrying failed tasks: one, a chosen list, or every failure in a time window.

A retry is a new task row (``source="retry"``, ``retried_from`` the
original) holding the original's stored arguments, copied by the database
without being decoded here, so encrypted arguments stay encrypted.  The rows
are pending and unowned: every instance's dispatcher claims and runs them
under their normal limits, as it does any work nobody holds.  Nothing here
starts a coroutine per retry, and candidates are read a page at a time and
inserted ``RETRY_BATCH`` per transaction.

Replaying a window retries each failure chain once.  A failure that has a
retry already is skipped: that newer attempt stands for it (and is itself
replayed if it failed too), so calling again never doubles the work.  Within
one call, the newest failed attempt of an original is the only one retried.
One call creates at most ``MAX_REPLAY_DISPATCH`` retries and looks at most
at ``MAX_REPLAY_SCAN`` failures, and says so (``capped``): calling again
continues where it stopped, since what it retried is now skipped.
"""

from __future__ import annotations

import re
from collections import Counter
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
# Most retries one retry-failed call creates: about half a second of inserts.
MAX_REPLAY_DISPATCH = 1000
# Most failures one retry-failed call looks at, skipped ones included.
MAX_REPLAY_SCAN = 20_000
# Most (original, new) pairs a report lists; its counts stay exact.
MAX_RESULTS = 1000
# Most links followed up a chain of retries to find its original.
MAX_CHAIN = 64

REPLAYABLE = (TaskStatus.FAILED, TaskStatus.INTERRUPTED)
WINDOW = re.compile(r"([0-9]+)([mhd])")  # not \d: it matches every script's digits
UNIT = {"m": "minutes", "h": "hours", "d": "days"}
# Why a task was not retried: the keys of RetryReport.skipped_by_reason.
SKIP_REASONS = (
    "not_found",
    "duplicate",
    "not_retryable",
    "already_retried",
    "function_unavailable",
    "no_key",
)


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
    skipped_by_reason: Counter[str] = field(default_factory=Counter)
    results: list[tuple[str, str]] = field(default_factory=list)
    truncated: bool = False
    capped: bool = False
    limit: int | None = None  # a replay's MAX_REPLAY_DISPATCH

    @property
    def skipped(self) -> int:
        """Every task not retried, whatever the reason."""
        return sum(self.skipped_by_reason.values())

    def skip(self, reason: str, count: int = 1) -> None:
        assert reason in SKIP_REASONS, reason
        if count:
            self.skipped_by_reason[reason] += count

    def add(self, copy: RetryCopy) -> None:
        self.dispatched += 1
        if len(self.results) < MAX_RESULTS:
            self.results.append((copy.original_id, copy.new_task_id))
        else:
            self.truncated = True

    def to_dict(self) -> dict[str, Any]:
        """fastapi-taskflow's ``{dispatched, skipped, results}``, plus why, the flags, the cap."""
        return {
            "dispatched": self.dispatched,
            "skipped": self.skipped,
            "skipped_by_reason": {
                reason: self.skipped_by_reason[reason] for reason in SKIP_REASONS
            },
            "results": [
                {"original_task_id": original, "new_task_id": new} for original, new in self.results
            ],
            "truncated": self.truncated,
            "capped": self.capped,
            "limit": self.limit,
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
        self.repository = repository
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
        found = await self.repository.retry_sources([task_id])
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
        if not await self.repository.insert_retries([copy], now=utcnow()):
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
        report.skip("duplicate", len(task_ids) - len(unique))
        for start in range(0, len(unique), RETRY_BATCH):
            chunk = unique[start : start + RETRY_BATCH]
            found = {s.task_id: s for s in await self.repository.retry_sources(chunk)}
            copies = [c for c in (self.copy_for(found.get(tid), report) for tid in chunk) if c]
            await self.insert(copies, report)
        return report

    async def replay(
        self, since: str | timedelta | None, func_name: str | None = None
    ) -> RetryReport:
        """Retry the newest failed (then interrupted) attempt of each task created in the window.

        Only tasks created before the call are considered, so retries that
        fail during the replay are not replayed again.  A failure that has
        a retry already is skipped (``already_retried``).  ``capped`` says
        the call stopped at ``MAX_REPLAY_DISPATCH`` retries or
        ``MAX_REPLAY_SCAN`` failures looked at, with more left.

        Raises:
            InvalidWindowError: ``since`` is not ``<N>m|h|d`` or ``all``.
        """
        window = parse_window(since)
        started = utcnow()
        replay = _Replay(self, started, _cutoff(started, window), func_name)
        for status in REPLAYABLE:
            if not await replay.run(status):
                break
        return replay.report

    async def insert(self, copies: list[RetryCopy], report: RetryReport) -> None:
        if not copies:
            return
        inserted = await self.repository.insert_retries(copies, now=utcnow())
        report.skip("not_found", len(copies) - len(inserted))  # deleted meanwhile
        for copy in inserted:
            report.add(copy)
        if inserted:
            await self._on_inserted()

    def copy_for(self, source: RetrySource | None, report: RetryReport) -> RetryCopy | None:
        """The retry to create for ``source``, or None (counted in ``report``) to skip it."""
        if source is None:
            report.skip("not_found")
        elif source.status not in REPLAYABLE:
            report.skip("not_retryable")
        elif source.payload_format == ENCRYPTED_FORMAT and not self._can_decrypt:
            report.skip("no_key")
        elif (max_retries := self._max_retries(source.func_name)) is None:
            report.skip("function_unavailable")
        else:
            return RetryCopy(source.task_id, new_task_id(), max_retries)
        return None

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


class _Replay:
    """One retry-failed call: its window, its budget, and the originals it has retried."""

    def __init__(
        self,
        replayer: Replayer,
        started: datetime,
        created_since: datetime | None,
        func_name: str | None,
    ) -> None:
        self.replayer = replayer
        self.repository = replayer.repository
        self.started = started
        self.created_since = created_since
        self.func_name = func_name
        self.report = RetryReport(limit=MAX_REPLAY_DISPATCH)
        self.looked_at = 0
        self.originals: set[str] = set()
        self.origin_of: dict[str, str | None] = {}

    async def run(self, status: TaskStatus) -> bool:
        """Replay the failures in ``status``; False once the call's budget is spent."""
        after: RetrySource | None = None
        while True:
            room = min(
                MAX_REPLAY_SCAN - self.looked_at, MAX_REPLAY_DISPATCH - self.report.dispatched
            )
            page = await self.repository.replay_candidates(
                ReplayPage(
                    status=status,
                    created_before=self.started,
                    created_since=self.created_since,
                    func_name=self.func_name,
                    after=after,
                    # Past the budget, one row tells whether anything was left out.
                    limit=min(RETRY_BATCH, room) if room > 0 else 1,
                )
            )
            if room <= 0:
                self.report.capped = bool(page)
                return not page
            if not page:
                return True
            self.looked_at += len(page)
            await self._replay_page(page)
            after = page[-1]

    async def _replay_page(self, page: list[RetrySource]) -> None:
        superseded = await self.repository.retried_ids([s.task_id for s in page])
        fresh = [s for s in page if s.task_id not in superseded]
        self.report.skip("already_retried", len(page) - len(fresh))
        originals = await self._originals(fresh)
        copies = []
        for source in fresh:  # newest first: the first of each original is its newest
            original = originals[source.task_id]
            if original in self.originals:
                self.report.skip("already_retried")
                continue
            copy = self.replayer.copy_for(source, self.report)
            if copy is not None:
                self.originals.add(original)
                copies.append(copy)
        await self.replayer.insert(copies, self.report)

    async def _originals(self, sources: list[RetrySource]) -> dict[str, str]:
        """The first task of each source's chain of retries (the source itself if none)."""
        for source in sources:
            self.origin_of[source.task_id] = source.retried_from
        found: dict[str, str] = {}
        for source in sources:
            current = source.task_id
            for _ in range(MAX_CHAIN):
                if current not in self.origin_of:
                    # One query for every chain's next unknown link, not one per chain.
                    unknown = {p for p in self.origin_of.values() if p and p not in self.origin_of}
                    looked_up = await self.repository.retry_origins(sorted(unknown))
                    for task_id in unknown:  # a deleted original ends its chain
                        self.origin_of[task_id] = looked_up.get(task_id)
                parent = self.origin_of[current]
                if parent is None:
                    break
                current = parent
            found[source.task_id] = current
        return found
