"""Where a task's function runs: on the event loop, in a thread pool, or in a worker process.

The runner calls an executor from inside the task's own asyncio task, whose
context already holds the request's context vars and the task's own, so
``task_log()``, ``get_task_context()`` and tracing work the same everywhere:
async functions are awaited right there, sync ones carry a copy of that
context into their thread.  (The process executor is in ``processes.py``.)

Each executor has ``slots``: the runner takes one before it marks a task
``running``, so a task never shows as running while it only waits.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from typing import Any

from taskflow.runtime.priority import Slots
from taskflow.runtime.threads import DaemonThreadPool, default_thread_count


class AsyncExecutor:
    """Coroutine functions, as tasks on the running loop (``max_concurrent`` at a time)."""

    name = "async"
    prepare = None

    def __init__(self, max_concurrent: int | None = None) -> None:
        self.slots = Slots(max_concurrent)

    async def run(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        return await func(*args, **kwargs)

    async def close(self) -> None:
        return None


class ThreadExecutor:
    """Plain functions, in a thread pool so they never block the event loop.

    The slots match the pool's threads: a task only starts (and is marked
    ``running``) when a thread is free for it, instead of queueing inside
    the pool while its row already says ``running``.
    """

    name = "thread"
    prepare = None

    def __init__(self, max_threads: int | None = None) -> None:
        size = max_threads or default_thread_count()
        self.slots = Slots(size)
        self._pool = DaemonThreadPool(size, thread_name_prefix="taskflow-sync")

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

    async def close(self) -> None:
        # Never wait here: a stuck sync task must not block the event loop.
        self._pool.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
