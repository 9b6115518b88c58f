"""Execution slots with a local priority queue, and the rule that picks a task's dispatch path.

Every executor has a number of slots (``max_concurrent_tasks`` for async
functions, the thread pool's size for sync ones, ``max_process_workers`` for
the process pool).  A task takes a slot before it is marked ``running``, so a
task that waits for one is still ``pending`` and its duration does not count
the wait.  Waiters are served highest ``priority`` first, in arrival order
among equals, and tasks without a priority after all others: a freed slot
goes straight to the best waiter, never to whichever task happens to ask next.

fastapi-taskflow's priority queue handed every item to
``asyncio.create_task`` as soon as it arrived, so nothing ever waited in it
and it ordered almost nothing.  Here the ordering happens where tasks really
wait: at the slot.  When a slot is free nothing is queued at all (the fast
path costs one comparison).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Literal

DispatchPath = Literal["now", "after_response"]


class Slots:
    """``limit`` slots (None: unlimited); waiters are served by priority, then arrival."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._free = limit if limit is not None else 0
        self._waiters: list[tuple[bool, int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()
        # Told when a slot goes back to the free count (nobody waited for it).
        self.on_free: Callable[[], None] | None = None

    @property
    def free(self) -> int:
        """How many slots are free now (0 when unlimited: there is nothing to count)."""
        return self._free

    @property
    def waiting(self) -> int:
        """How many tasks wait for a slot (cancelled waiters not yet dropped included)."""
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take a slot at once if one is free and nobody waits for it (the fast path)."""
        if self.limit is None:
            return True
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    def take_free(self, most: int) -> int:
        """Take up to ``most`` free slots at once, none while anybody waits; returns how many."""
        if self.limit is None:
            return max(most, 0)
        if self._waiters:
            return 0
        taken = max(min(most, self._free), 0)
        self._free -= taken
        return taken

    def release_many(self, count: int) -> None:
        for _ in range(count):
            self.release()

    async def acquire(self, priority: int | None) -> None:
        """Take a slot, waiting in priority order when none is free."""
        if self.try_acquire():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # No priority sorts after every priority, negative ones included: the
        # order in which the database hands out claims (NULLs last).
        key = (priority is None, -(priority or 0), next(self._arrivals), future)
        heapq.heappush(self._waiters, key)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # handed a slot while being cancelled: pass it on
            raise

    def release(self) -> None:
        """Give a slot back: to the best live waiter, else to the free count."""
        if self.limit is None:
            return
        while self._waiters:
            *_order, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)
                return
        self._free += 1
        if self.on_free is not None:
            self.on_free()


def dispatch_path(priority: int | None, eager: bool, executor: str) -> DispatchPath:
    """Whether a task added in a request starts now or after the response.

    fastapi-taskflow's rules: a task with a priority skips the request's
    background list and enters the priority queue at once (``eager`` is then
    ignored: the queue decides when it starts); ``eager=True`` starts it at
    once too; everything else runs after the response, in the order added.
    ``eager`` with the process executor is not honoured (``add_task`` warns)
    and the task runs after the response.
    """
    if priority is not None:
        return "now"
    if eager and executor != "process":
        return "now"
    return "after_response"
