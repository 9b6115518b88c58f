"""``ChangeFeed``: tells live dashboard streams that tasks of this instance changed.

The writer notifies the feed after every commit, the manager after cancels,
retries and deletions.  With nobody listening a notification costs one
truth test; listeners receive coalesced ids (a burst of commits wakes a
stream once) and decide themselves what to re-read from the database.
Other instances' changes arrive through ``RemoteChanges`` where the store
can push them (PostgreSQL LISTEN/NOTIFY); streams also poll, which covers
every store and any notice a connection pooler drops.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable

from taskflow.repository.base import TaskRepository

logger = logging.getLogger("taskflow.changes")

# A stream that falls this far behind stops tracking ids and re-reads everything.
MAX_TRACKED_IDS = 1000


class ChangeWaiter:
    """One listener's view of the feed: a wake-up flag plus the ids changed since it was read."""

    def __init__(self, feed: ChangeFeed) -> None:
        self._feed = feed
        self._event = asyncio.Event()
        self._ids: set[str] | None = set()
        self.closed = False

    def _mark(self, ids: Iterable[str] | None) -> None:
        if ids is None:
            self._ids = None
        elif self._ids is not None:
            self._ids.update(ids)
            if len(self._ids) > MAX_TRACKED_IDS:
                self._ids = None
        self._event.set()

    def _close(self) -> None:
        self.closed = True
        self._event.set()

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait for a change (or the feed closing); False when ``timeout`` passed first."""
        if self._event.is_set():
            return True
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def take(self) -> frozenset[str] | None:
        """The ids changed since the last call and reset; None means "anything may have"."""
        ids = None if self._ids is None else frozenset(self._ids)
        self._ids = set()
        self._event.clear()
        return ids

    def unsubscribe(self) -> None:
        """Stop listening (idempotent)."""
        self._feed._waiters.discard(self)


class ChangeFeed:
    """In-process notifications of task changes; used on the event-loop thread only."""

    def __init__(self) -> None:
        # Weak: a stream that never started (client gone first) cannot leak its waiter.
        self._waiters: weakref.WeakSet[ChangeWaiter] = weakref.WeakSet()
        self.closed = False

    @property
    def listening(self) -> bool:
        """Whether any stream listens: writers skip building the id set when not."""
        return bool(self._waiters)

    def subscribe(self) -> ChangeWaiter:
        """A new waiter; unsubscribe it when done.  Closed at once if the feed is."""
        waiter = ChangeWaiter(self)
        if self.closed:
            waiter._close()
        else:
            self._waiters.add(waiter)
        return waiter

    def notify(self, ids: Iterable[str] | None = None) -> None:
        """Wake every listener; ``ids`` None when the change cannot be named (bulk delete)."""
        if not self._waiters:
            return
        if ids is not None and not isinstance(ids, (set, frozenset, list, tuple)):
            ids = list(ids)  # one iterator, many listeners
        for waiter in list(self._waiters):
            waiter._mark(ids)

    def open(self) -> None:
        """Accept listeners again (the manager starts)."""
        self.closed = False

    def close(self) -> None:
        """Wake and end every listener (the manager shuts down)."""
        self.closed = True
        waiters, self._waiters = list(self._waiters), weakref.WeakSet()
        for waiter in waiters:
            waiter._close()


class RemoteChanges:
    """A manager service: wakes the feed when another instance commits task changes."""

    def __init__(self, repository: TaskRepository, instance_id: str, feed: ChangeFeed) -> None:
        self._repository = repository
        self._instance_id = instance_id
        self._feed = feed
        self._stop: Callable[[], Awaitable[None]] | None = None

    async def start(self) -> None:
        try:
            self._stop = await self._repository.listen_changes(
                self._instance_id, lambda: self._feed.notify(None)
            )
        except Exception as exc:  # polling still shows other instances' changes
            logger.warning("cross-instance change notices unavailable: %s", exc)

    async def stop(self) -> None:
        stop, self._stop = self._stop, None
        if stop is not None:
            await stop()
