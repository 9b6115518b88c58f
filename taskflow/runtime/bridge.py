"""Blocking calls to the repository from code that cannot await.

``add_task()`` is synchronous, as in FastAPI, yet an idempotency key needs
the database's answer before the id can be returned.  In a worker thread
(sync routes) the manager simply waits on its own loop; on the event-loop
thread itself it cannot, so the call runs here instead: on a private event
loop in a helper thread, with its own small connection pool.  The caller's
loop is blocked for one round trip, which is why async code should prefer
``await task_manager.enqueue(..., idempotency_key=...)``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from taskflow.repository.base import TaskRepository

T = TypeVar("T")
CALL_TIMEOUT_S = 30.0


class BlockingBridge:
    """A helper thread with its own loop and repository, started on first use."""

    def __init__(self, factory: Callable[[], TaskRepository]) -> None:
        self._factory = factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._repository: TaskRepository | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def call(self, work: Callable[[TaskRepository], Awaitable[T]]) -> T:
        """Run ``work(repository)`` to completion and return its result (blocking)."""
        loop, repository = self._ensure_started()

        async def run() -> T:
            return await work(repository)

        return asyncio.run_coroutine_threadsafe(run(), loop).result(CALL_TIMEOUT_S)

    def _ensure_started(self) -> tuple[asyncio.AbstractEventLoop, TaskRepository]:
        with self._lock:
            if self._loop is None or self._repository is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="taskflow-bridge", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
                self._repository = self._factory()
            return self._loop, self._repository

    def close(self) -> None:
        """Release the helper's connections and stop its thread."""
        with self._lock:
            loop, repository, thread = self._loop, self._repository, self._thread
            self._loop = self._repository = self._thread = None
        if loop is None or thread is None:
            return
        if repository is not None:
            asyncio.run_coroutine_threadsafe(repository.close(), loop).result(CALL_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(CALL_TIMEOUT_S)
        loop.close()
