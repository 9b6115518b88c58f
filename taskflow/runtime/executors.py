"""Where a task's function runs: on the event loop, or in a thread pool.

The runner calls an executor from inside the task's own asyncio task, whose
context already holds the request's context vars and the task's own, so
``task_log()``, ``get_task_context()`` and tracing work the same everywhere:
async functions are awaited right there, sync ones carry a copy of that
context into their thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from typing import Any

from taskflow.runtime.threads import DaemonThreadPool


class AsyncExecutor:
    """Coroutine functions, as tasks on the running loop (optionally capped by a semaphore)."""

    name = "async"

    def __init__(self, max_concurrent: int | None = None) -> None:
        self._slots = asyncio.Semaphore(max_concurrent) if max_concurrent else None

    async def run(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        return await func(*args, **kwargs)

    async def acquire(self) -> None:
        if self._slots is not None:
            await self._slots.acquire()

    def release(self) -> None:
        if self._slots is not None:
            self._slots.release()


class ThreadExecutor:
    """Plain functions, in a thread pool so they never block the event loop."""

    name = "thread"

    def __init__(self, max_threads: int | None = None) -> None:
        self._pool = DaemonThreadPool(max_threads, thread_name_prefix="taskflow-sync")

    async def run(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        loop = asyncio.get_running_loop()
        call = functools.partial(func, *args, **kwargs)
        context = contextvars.copy_context()
        return await loop.run_in_executor(self._pool, context.run, call)

    async def acquire(self) -> None:
        return None

    def release(self) -> None:
        return None

    def shutdown(self) -> None:
        # Never wait here: a stuck sync task must not block the event loop.
        self._pool.shutdown(wait=False, cancel_futures=True)
