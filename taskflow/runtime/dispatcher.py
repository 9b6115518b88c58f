"""The dispatcher: heartbeats, and claims of work no local queue holds.

Each instance renews the leases of the tasks it holds (and only those) at
each heartbeat, one statement per 500 tasks, and polls for tasks nobody
holds: rows left by a dead instance, retries of another instance that
stopped, rows inserted by other processes (``enqueue(session=...)``).
Polling is adaptive: right after a claim found work it polls again at once,
and it backs off to ``poll_max`` while idle.
``wake()`` cuts a wait short (a local signal that work may be there).

An expired lease means its instance died only if that instance could have
renewed it.  After an outage that every instance saw, all leases look
expired, though their instances are alive and about to renew them.  So rows
another instance's lease names, running or pending, are taken over only by
an instance that has itself reached the database without a failure for a
whole lease: in that time any live owner has renewed its leases, and has
written down what it withdrew (a pending row whose request answered 503
must never run).  Unowned pending rows are taken at once.

For executors whose tasks start the moment they hold a slot (async and
thread functions), a claim takes only as many pending rows as there are free
slots, reserves those slots first, and records the start in the claim
itself: the task then starts without a second commit, which is what keeps a
burn-down of queued jobs as fast as the claims.  Rows of other executors,
and running rows to recover, are taken by a plain claim and wait locally.
Each kind of claim backs off on its own while it finds nothing, so a busy
instance does not repeat an empty claim every time a task finishes.

Such a claim is a round trip, and the slots that free up while it is in
flight sit idle until it returns.  Where the store says several claims may
be in flight (``TaskRepository.parallel_claims``: Redis), while the claim
loop waits for one claim, a quarter of an executor's slots coming free sends
another starting claim for them (at most ``parallel_claims - 1`` besides the
loop's).  The store's atomic claim keeps them from taking the same task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from taskflow.models import TaskRecord, utcnow
from taskflow.repository.base import InstanceInfo, TaskRepository
from taskflow.runtime.priority import Slots

logger = logging.getLogger("taskflow.dispatcher")

ClaimHandler = Callable[[list[TaskRecord]], None]
# Adopts rows a starting claim took: each adopted task keeps one of ``slots``,
# reserved before the claim; every other reserved slot is released.
StartHandler = Callable[[list[TaskRecord], Slots], None]
PLAIN = ""  # the key of the plain claim's backoff, beside one per starting executor
STOP_TIMEOUT_S = 10.0
FLIGHT_SHARE = 4  # one leaves once 1/FLIGHT_SHARE of an executor's slots are free


class Dispatcher:
    """Keeps this instance's leases alive and adopts abandoned or unowned tasks."""

    def __init__(
        self,
        repository: TaskRepository,
        instance: InstanceInfo,
        *,
        on_claimed: ClaimHandler,
        capacity: Callable[[], int],
        start_slots: Mapping[str, Slots] | None = None,
        on_started: StartHandler | None = None,
        held: Callable[[], dict[str, int]] = dict,
        on_lost: Callable[[frozenset[str]], None] = lambda _ids: None,
        lease_seconds: float,
        heartbeat_interval: float,
        poll_min: float = 0.05,
        poll_max: float = 2.0,
        claim_batch: int = 100,
    ) -> None:
        self._repository = repository
        self.instance = instance
        self._on_claimed = on_claimed
        self._held = held
        self._on_lost = on_lost
        self._capacity = capacity
        self._start_slots = dict(start_slots or {}) if on_started is not None else {}
        for slots in self._start_slots.values():
            slots.on_free = self.room_freed
        self._on_started = on_started
        # Per kind of claim: how long it waits after finding nothing, and until when.
        self._idle_delay: dict[str, float] = {}
        self._idle_until: dict[str, float] = {}
        self._lease = timedelta(seconds=lease_seconds)
        self._heartbeat_interval = heartbeat_interval
        self.poll_min = poll_min
        self._poll_max = poll_max
        self._claim_batch = claim_batch
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._unlisten: Callable[[], Awaitable[None]] | None = None
        self._stopped = False
        self.claimed_total = 0
        # Since when (monotonic) every heartbeat and claim has reached the
        # database; None after a failure.
        self._reachable_since: float | None = None
        # Starting claims sent beside the loop's (see the module doc), and
        # whether the loop itself is in a claim round now.
        self._extra_flights = max(repository.parallel_claims - 1, 0)
        self._flights: set[asyncio.Task[None]] = set()
        self._in_round = False
        self.flights_sent = 0

    async def start(self) -> None:
        now = utcnow()
        self._stopped = False
        self.instance = replace(self.instance, started_at=now, heartbeat_at=now)
        await self._repository.register_instance(self.instance)
        self._reached()
        self._unlisten = await self._repository.listen(self.wake)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._heartbeat_loop(), name="taskflow-heartbeat"),
            loop.create_task(self._claim_loop(), name="taskflow-claims"),
        ]

    async def stop_claiming(self) -> None:
        """Claim nothing more; heartbeats go on, so held tasks keep their leases."""
        self._stopped = True
        self._wakeup.set()
        claims = self._tasks[1] if len(self._tasks) > 1 else None
        await self._finish_claims(claims)

    async def _finish_claims(self, claims: asyncio.Task[None] | None) -> None:
        """Let the claim loop and the flights finish the claims they are in, within a bound.

        Not cancelled at once: cancelling a claim mid-transaction could leave
        a connection holding row locks.
        """
        running = {task for task in (claims, *self._flights) if task is not None}
        running = {task for task in running if not task.done()}
        if running:
            _done, late = await asyncio.wait(running, timeout=STOP_TIMEOUT_S)
            for task in late:
                task.cancel()

    @property
    def reachable(self) -> bool:
        """Whether the last heartbeat or claim reached the database (False before ``start()``)."""
        return self._reachable_since is not None

    def may_take_over(self) -> bool:
        """Whether expired leases prove their instances dead (see module doc)."""
        since = self._reachable_since
        return since is not None and time.monotonic() - since >= self._lease.total_seconds()

    def _reached(self) -> None:
        if self._reachable_since is None:
            self._reachable_since = time.monotonic()

    def _unreachable(self) -> None:
        self._reachable_since = None

    async def stop(self) -> None:
        """Stop claiming and heartbeating (leases then run out unless released).

        The claim loop is asked to stop and finishes the claim it is in: cancelling
        it mid-transaction could leave a connection holding row locks.
        """
        self._stopped = True
        self._wakeup.set()
        heartbeat, claims = self._tasks or (None, None)
        if heartbeat is not None:
            heartbeat.cancel()
        pending = [task for task in (*self._tasks, *self._flights) if not task.done()]
        await self._finish_claims(claims)
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._unlisten is not None:
            await self._unlisten()
            self._unlisten = None
        try:
            await self._repository.deregister_instance(self.instance.instance_id, now=utcnow())
        except Exception as exc:  # the database may be the reason we stop
            logger.warning("could not mark instance %s stopped: %s", self.instance.instance_id, exc)

    def wake(self) -> None:
        """New work may be in the database: every kind of claim is due at once."""
        self._idle_until.clear()
        self._wakeup.set()

    def room_freed(self) -> None:
        """A slot came free: claims that were finding work may take more."""
        if self._start_slots:
            self._wakeup.set()
            if self._in_round:
                self._send_flights()

    def _send_flights(self) -> None:
        """Starting claims for the slots that came free while the loop is in a claim."""
        clock = time.monotonic()
        for executor, slots in self._start_slots.items():
            if len(self._flights) >= self._extra_flights or self._stopped:
                return
            if slots.limit is None or self._idle_until.get(executor, 0.0) > clock:
                continue
            if slots.free * FLIGHT_SHARE < slots.limit:
                continue
            reserved = slots.take_free(min(self._claim_batch, self._capacity()))
            if reserved:
                flight = asyncio.get_running_loop().create_task(
                    self._flight(executor, slots, reserved), name="taskflow-claim-flight"
                )
                self._flights.add(flight)
                flight.add_done_callback(self._flights.discard)
                self.flights_sent += 1

    async def _flight(self, executor: str, slots: Slots, reserved: int) -> None:
        now = utcnow()
        try:
            taken = await self._claim_to_start(executor, slots, reserved, now, now + self._lease)
        except Exception as exc:
            self._unreachable()
            logger.warning("taskflow claim failed (%s); retrying", exc)
            return
        self._reached()
        self._found(executor, taken, time.monotonic())
        self.claimed_total += taken

    async def beat(self) -> int:
        """One heartbeat now; returns the number of leases renewed."""
        now = utcnow()
        self.instance = replace(self.instance, heartbeat_at=now)
        held = self._held()
        try:
            renewed = await self._repository.heartbeat(
                self.instance, lease_until=now + self._lease, held=held.keys()
            )
        except Exception:
            self._unreachable()
            raise
        self._reached()
        # Tasks cancelled or taken over elsewhere: stop working on them now,
        # not only when their next write is refused.
        if held:
            lost = await self._repository.lost_tasks(self.instance.instance_id, held)
            if lost:
                self._on_lost(frozenset(lost))
        return renewed

    async def claim_once(self) -> int:
        """One claim round now, of every kind; returns how many tasks were adopted."""
        return await self._claim_round(due_only=False)

    async def _claim_round(self, *, due_only: bool) -> int:
        self._in_round = True
        try:
            return await self._claims_of_round(due_only=due_only)
        finally:
            self._in_round = False

    async def _claims_of_round(self, *, due_only: bool) -> int:
        room = min(self._claim_batch, self._capacity())
        if room <= 0:
            return 0
        now = utcnow()
        lease_until = now + self._lease
        clock = time.monotonic()
        found = 0
        try:
            for executor, slots in self._start_slots.items():
                if due_only and self._idle_until.get(executor, 0.0) > clock:
                    continue
                reserved = slots.take_free(room - found)
                if reserved:
                    taken = await self._claim_to_start(executor, slots, reserved, now, lease_until)
                    self._found(executor, taken, clock)
                    found += taken
            if found < room and not (due_only and self._idle_until.get(PLAIN, 0.0) > clock):
                records = await self._repository.claim(
                    self.instance.instance_id,
                    now=now,
                    lease_until=lease_until,
                    limit=room - found,
                    take_expired=self.may_take_over(),
                    leave_to_start=tuple(self._start_slots),
                )
                self._found(PLAIN, len(records), clock)
                if records:
                    self._on_claimed(records)
                found += len(records)
        except Exception:
            self._unreachable()
            raise
        self._reached()
        self.claimed_total += found
        return found

    async def _claim_to_start(
        self, executor: str, slots: Slots, reserved: int, now: datetime, lease_until: datetime
    ) -> int:
        assert self._on_started is not None
        try:
            records = await self._repository.claim(
                self.instance.instance_id,
                now=now,
                lease_until=lease_until,
                limit=reserved,
                take_expired=self.may_take_over(),
                start_executor=executor,
            )
        except BaseException:
            slots.release_many(reserved)
            raise
        slots.release_many(reserved - len(records))
        if records:
            self._on_started(records, slots)
        return len(records)

    def _found(self, kind: str, count: int, clock: float) -> None:
        if count:
            self._idle_delay.pop(kind, None)
            self._idle_until.pop(kind, None)
            return
        delay = min(max(self._idle_delay.get(kind, 0.0) * 2, self.poll_min), self._poll_max)
        self._idle_delay[kind] = delay
        self._idle_until[kind] = clock + delay

    def _next_due_in(self) -> float:
        """Seconds until the next kind of claim is due, within [``poll_min``, ``poll_max``].

        At least ``poll_min``: a kind due now that did not run had no free
        slot, and ``room_freed()`` ends the wait when one comes free.
        """
        kinds = [PLAIN, *self._start_slots]
        clock = time.monotonic()
        due = min(self._idle_until.get(kind, 0.0) for kind in kinds) - clock
        return min(max(due, self.poll_min), self._poll_max)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            try:
                await self.beat()
            except Exception as exc:
                logger.warning("taskflow heartbeat failed (%s); retrying", exc)

    async def _claim_loop(self) -> None:
        failures = 0
        while not self._stopped:
            try:
                found = await self._claim_round(due_only=True)
                failures = 0
            except Exception as exc:
                logger.warning("taskflow claim failed (%s); retrying", exc)
                found = 0
                failures += 1
            if found:
                await asyncio.sleep(0)
                continue
            delay = self._next_due_in()
            if failures:
                delay = max(delay, min(self.poll_min * 2**failures, self._poll_max))
            # asyncio.wait, not wait_for: wait_for may swallow a cancellation
            # on Python < 3.12.
            waiter = asyncio.ensure_future(self._wakeup.wait())
            try:
                await asyncio.wait({waiter}, timeout=delay)
            finally:
                waiter.cancel()
            self._wakeup.clear()
