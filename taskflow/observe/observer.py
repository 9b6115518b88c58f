"""``TaskObserver`` and ``LoggerChain``: fan-out of events, isolated from tasks and each other."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence

from taskflow.models import LOG_LEVELS, TaskStatus
from taskflow.observe.events import LifecycleEvent, LogEvent

logger = logging.getLogger("taskflow.observe")

LEVEL_WEIGHT = {level: weight for weight, level in enumerate(LOG_LEVELS)}
STATUS_LEVEL = {
    TaskStatus.PENDING: "info",
    TaskStatus.RUNNING: "info",
    TaskStatus.SUCCESS: "info",
    TaskStatus.FAILED: "error",
    TaskStatus.INTERRUPTED: "warning",
    TaskStatus.CANCELLED: "warning",
}
QUEUE_SIZE = 10_000


class TaskObserver:
    """Base class of observers; every hook is optional (a no-op here).

    Args:
        min_level: the lowest ``task_log`` level delivered to ``on_log``
            (and the lowest lifecycle level, failed being "error").
    """

    def __init__(self, min_level: str = "info") -> None:
        if min_level not in LEVEL_WEIGHT:
            raise ValueError(f"min_level must be one of {LOG_LEVELS}, got {min_level!r}")
        self.min_level = min_level

    async def on_log(self, event: LogEvent) -> None:
        """A ``task_log()`` line at or above ``min_level``."""

    async def on_lifecycle(self, event: LifecycleEvent) -> None:
        """A status change."""

    async def startup(self) -> None:
        """Called when the manager starts."""

    async def close(self) -> None:
        """Called when the manager stops; release files and connections here."""

    def _should_log(self, level: str) -> bool:
        return LEVEL_WEIGHT.get(level, 1) >= LEVEL_WEIGHT[self.min_level]

    def _should_log_lifecycle(self, status: TaskStatus) -> bool:
        return self._should_log(STATUS_LEVEL.get(status, "info"))


class LoggerChain(TaskObserver):
    """Delivers every event to each observer in turn, in order, off the task's path.

    Events are queued and delivered by one background task, so a slow
    observer never slows a task, and one that raises is logged and skipped
    without affecting the others.  ``emit_*`` may be called from any thread.
    """

    def __init__(self, observers: Sequence[TaskObserver]) -> None:
        super().__init__(min_level="debug")
        self.observers = list(observers)
        self._queue: asyncio.Queue[LogEvent | LifecycleEvent | None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    async def startup(self) -> None:
        """Start every observer and the delivery task."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._queue = asyncio.Queue(QUEUE_SIZE)
        for observer in self.observers:
            await self._guard(observer.startup(), observer)
        self._task = self._loop.create_task(self._deliver(), name="taskflow-observers")

    async def close(self) -> None:
        """Deliver what is queued, then close every observer."""
        if self._task is not None and self._queue is not None:
            await self._queue.put(None)
            await self._task
            self._task = None
        for observer in self.observers:
            await self._guard(observer.close(), observer)

    async def on_log(self, event: LogEvent) -> None:
        """Deliver a log event to each observer whose level admits it."""
        for observer in self.observers:
            if observer._should_log(event.level):
                await self._guard(observer.on_log(event), observer)

    async def on_lifecycle(self, event: LifecycleEvent) -> None:
        """Deliver a lifecycle event to each observer."""
        for observer in self.observers:
            await self._guard(observer.on_lifecycle(event), observer)

    def emit(self, event: LogEvent | LifecycleEvent) -> None:
        """Queue an event for delivery (from any thread)."""
        if self._loop is None:
            return
        if threading.get_ident() != self._thread:
            self._loop.call_soon_threadsafe(self.emit, event)
            return
        assert self._queue is not None
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning("observers are too slow: %d events dropped", self.dropped)

    async def _deliver(self) -> None:
        assert self._queue is not None
        while True:
            event = await self._queue.get()
            if event is None:
                return
            if isinstance(event, LogEvent):
                await self.on_log(event)
            else:
                await self.on_lifecycle(event)

    @staticmethod
    async def _guard(call: object, observer: TaskObserver) -> None:
        try:
            await call  # type: ignore[misc]
        except Exception:
            logger.exception("taskflow observer %r failed; the others still run", observer)
