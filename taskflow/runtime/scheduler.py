"""The scheduler: fires each schedule's slots, exactly once across every instance.

Every instance runs one. It keeps the schedules' rows in memory only to know
when to wake: the database decides who fires. At a slot, each instance
tries the compare-and-swap of ``TaskRepository.fire_schedule``; the winner's
transaction advances ``next_run_at`` and inserts the task row (unowned, so
the winner's dispatcher, woken at once, or any other instance claims and runs
it like any task: retries, logs, leases).  A loser re-reads the row.

No lock expires and no leader is elected, so a paused process, a clock
running a little fast or a sub-second interval cannot make a slot fire twice.
A failure (the database is down) is logged and retried: it never stops the
loop.  The rows are re-read every ``refresh_interval`` so pauses, resumes and
other instances' firings are seen; waking is precise to the millisecond.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from taskflow.models import TaskRecord, TaskSource, utcnow
from taskflow.repository.base import TaskRepository
from taskflow.runtime.records import new_record
from taskflow.schedules import (
    FireOutcome,
    ScheduledEntry,
    ScheduleNotFoundError,
    ScheduleState,
)
from taskflow.serialization import Cipher

logger = logging.getLogger("taskflow.scheduler")

MIN_SLEEP = 0.001
MAX_RETRY_DELAY = 5.0
STARTUP_WINDOW = timedelta(seconds=60)
STOP_TIMEOUT = 10.0


@dataclass
class SchedulerStats:
    """What this instance's scheduler did: slots fired, races lost, errors survived."""

    fired: int = 0
    lost: int = 0
    duplicates: int = 0
    errors: int = 0


class PeriodicScheduler:
    """Fires the registered schedules' slots; a manager service (``start``/``stop``).

    Args:
        on_fired: called after a fired slot's task is committed (wakes the dispatcher).
        clock: the current time, aware UTC; tests pass a controllable one.
        refresh_interval: seconds between re-reads of the schedules' rows.
        retry_interval: first wait after a failure, doubled up to 5 s while it lasts.
    """

    def __init__(
        self,
        repository: TaskRepository,
        *,
        cipher: Cipher | None = None,
        on_fired: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = utcnow,
        refresh_interval: float = 2.0,
        retry_interval: float = 0.5,
    ) -> None:
        self.repository = repository
        self.clock = clock
        self.refresh_interval = refresh_interval
        self.retry_interval = retry_interval
        self.entries: dict[str, ScheduledEntry] = {}
        self.states: dict[str, ScheduleState] = {}
        self.stats = SchedulerStats()
        self._cipher = cipher
        self._on_fired = on_fired
        self._unsynced: set[str] = set()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def add(self, entry: ScheduledEntry) -> None:
        """Register (or replace) an entry; a running scheduler writes its row at once."""
        self.entries[entry.name] = entry
        self._unsynced.add(entry.name)
        self.wake()

    def wake(self) -> None:
        self._wakeup.set()

    async def start(self) -> None:
        """Write every entry's row (run_on_startup applies now), then start the loop."""
        self._unsynced = set(self.entries)
        self.states.clear()
        self._wakeup = asyncio.Event()  # bound to this start's event loop
        self._stopping = False
        try:
            await self.sync()
        except Exception as exc:  # the loop retries: startup must not fail on it
            self.stats.errors += 1
            logger.warning("taskflow scheduler could not register its schedules (%s)", exc)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="taskflow-scheduler")

    async def stop(self) -> None:
        """Stop after the step in progress: a transaction cancelled half-way could
        leave its connection, and the row locks it holds, behind."""
        task, self._task = self._task, None
        self._stopping = True
        self.wake()
        if task is None:
            return
        _done, pending = await asyncio.wait({task}, timeout=STOP_TIMEOUT)
        if pending:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    # -- one step each; the loop below strings them together ------------------

    async def sync(self) -> None:
        """Create or update the rows of entries not written since this start."""
        for name in sorted(self._unsynced):
            entry = self.entries[name]
            now = self.clock()
            first = now if entry.run_on_startup else entry.trigger.next_after(now)
            since = now - self._startup_window(entry, now) if entry.run_on_startup else None
            self.states[name] = await self.repository.sync_schedule(
                entry.definition, first_run_at=first, now=now, run_now_unless_fired_since=since
            )
            self._unsynced.discard(name)

    async def refresh(self) -> None:
        """Re-read every row: pauses, resumes and other instances' firings."""
        found = {state.name: state for state in await self.repository.list_schedules()}
        for name in self.entries:
            if name in found:
                self.states[name] = found[name]
            else:  # deleted by hand: write it again
                self.states.pop(name, None)
                self._unsynced.add(name)

    async def tick(self) -> int:
        """Try every slot due now; returns how many this instance fired.

        A failing schedule is logged and counted in ``stats.errors``; the
        others still fire, and the loop tries it again.
        """
        fired = 0
        for name, state in list(self.states.items()):
            if self._stopping:
                break
            now = self.clock()
            entry = self.entries.get(name)
            if entry is None or state.paused or state.next_run_at is None:
                continue
            if state.next_run_at > now:
                continue
            try:
                fired += await self._fire(entry, state.next_run_at, now)
            except Exception as exc:
                self.stats.errors += 1
                logger.warning("taskflow schedule %r could not fire (%s); retrying", name, exc)
        return fired

    async def _fire(self, entry: ScheduledEntry, slot: datetime, now: datetime) -> int:
        following = entry.trigger.next_slot(slot, now, entry.catch_up)
        record = self._record(entry, slot)
        outcome = await self.repository.fire_schedule(
            entry.name, slot=slot, next_run_at=following, record=record, now=now
        )
        if outcome is FireOutcome.LOST:
            self.stats.lost += 1
            await self._reread(entry.name, slot)
            return 0
        state = self.states[entry.name]
        self.states[entry.name] = replace(
            state, next_run_at=following, last_run_at=slot, last_task_id=record.task_id
        )
        if outcome is FireOutcome.DUPLICATE:
            self.stats.duplicates += 1
            logger.warning("schedule %r slot %s had fired already", entry.name, slot.isoformat())
            return 0
        self.stats.fired += 1
        self._on_fired()
        return 1

    async def _reread(self, name: str, slot: datetime) -> None:
        """After a lost slot: learn the next run another instance set (or the pause)."""
        fresh = await self.repository.get_schedule(name)
        if fresh is None:  # deleted by hand: write it again
            self.states.pop(name, None)
            self._unsynced.add(name)
            return
        if fresh.next_run_at == slot and not fresh.paused:
            # Lost although the slot is still there: a value the comparison does
            # not match (edited by hand?).  Wait for the next refresh, not 1 ms.
            logger.warning("schedule %r: slot %s could not be claimed", name, slot.isoformat())
            self.states.pop(name, None)
            return
        self.states[name] = fresh

    def _record(self, entry: ScheduledEntry, slot: datetime) -> TaskRecord:
        # No owner: the dispatcher woken by on_fired claims it, or any instance does.
        record = new_record(
            entry.target,
            (),
            {},
            owner=None,
            lease_seconds=0,
            cipher=self._cipher,
            source=TaskSource.SCHEDULED,
        )
        record.schedule_name = entry.name
        record.scheduled_for = slot
        return record

    @staticmethod
    def _startup_window(entry: ScheduledEntry, now: datetime) -> timedelta:
        """run_on_startup is skipped when the schedule fired this recently (instances
        starting together fire it once): one period of the trigger, at most a minute."""
        first = entry.trigger.next_after(now)
        period = entry.trigger.next_after(first) - first
        return min(period, STARTUP_WINDOW)

    # -- pause and resume -------------------------------------------------------

    async def set_paused(self, name: str, paused: bool) -> ScheduleState:
        """Pause or resume ``name`` for every instance (the state is in the database).

        Resuming does not fire the runs missed while paused: a next run that
        passed becomes the trigger's next one after now.

        Raises:
            ScheduleNotFoundError: no schedule row has that name.
        """
        now = self.clock()
        entry = self.entries.get(name)
        resume_at = entry.trigger.next_after(now) if entry is not None and not paused else None
        state = await self.repository.set_schedule_paused(
            name, paused, resume_at=resume_at, now=now
        )
        if state is None:
            raise ScheduleNotFoundError(
                f"no schedule named {name!r}: GET /tasks/schedules lists the schedules"
            )
        if name in self.entries:
            self.states[name] = state
        self.wake()
        return state

    # -- the loop ---------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_refresh = loop.time() + self.refresh_interval
        failures = 0
        while not self._stopping:
            self._wakeup.clear()  # a wake() during the step below cuts the next sleep short
            errors = self.stats.errors
            try:
                if self._unsynced:
                    await self.sync()
                if loop.time() >= next_refresh:
                    next_refresh = loop.time() + self.refresh_interval
                    await self.refresh()
                await self.tick()
            except Exception as exc:
                self.stats.errors += 1
                logger.warning("taskflow scheduler step failed (%s); retrying", exc)
            if self.stats.errors != errors:
                failures += 1
                next_refresh = loop.time()  # re-read everything once it works again
                backoff = self.retry_interval * 2 ** (failures - 1)
                delay: float | None = min(backoff, MAX_RETRY_DELAY)
            else:
                failures = 0
                delay = self._until_due(next_refresh - loop.time())
            await self._sleep(delay)

    def _until_due(self, until_refresh: float) -> float | None:
        """Seconds until the earliest due slot or the next refresh (None: nothing to do)."""
        if not self.entries:
            return None
        now = self.clock()
        delay = max(until_refresh, 0.0)
        for state in self.states.values():
            if state.paused or state.next_run_at is None or state.name not in self.entries:
                continue
            delay = min(delay, (state.next_run_at - now).total_seconds())
        return max(delay, MIN_SLEEP)

    async def _sleep(self, delay: float | None) -> None:
        # A timer that sets the event, not asyncio.wait_for: on Python < 3.12,
        # wait_for can swallow a cancellation that lands as the event is set.
        timer = None
        if delay is not None:
            timer = asyncio.get_running_loop().call_later(delay, self._wakeup.set)
        try:
            await self._wakeup.wait()
        finally:
            if timer is not None:
                timer.cancel()
