"""``task_manager.store``: fastapi-taskflow's in-memory store, as a read-only view of the database.

fastapi-taskflow's ``store.get(task_id)`` and ``store.list()`` were plain
calls on a dict, made from sync and async routes alike.  Here the tasks are
rows, read by coroutines on the manager's event loop, so the view has two
forms over one implementation: ``get()`` / ``list()`` for code that cannot
await (a sync route runs in a worker thread, which waits on the manager's
loop), and ``aget()`` / ``alist()`` for async code.  A blocking call made on
an event loop's own thread would stall that loop (and deadlock, on the
manager's), so it is refused with an error that names the async form.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from taskflow.exceptions import BlockingCallError, NotStartedError
from taskflow.models import TaskRecord

if TYPE_CHECKING:
    from taskflow.manager import TaskManager

T = TypeVar("T")
# A read waits this long on the manager's loop before the caller gets TimeoutError.
BLOCKING_READ_TIMEOUT_S = 30.0


class TaskStoreView:
    """Read-only access to the tasks in the database under fastapi-taskflow's names.

    Every instance's tasks are visible, not only this process's.
    ``list()`` returns the newest 1,000 (use ``task_manager.list_tasks()``
    to page through more).
    """

    def __init__(self, manager: TaskManager) -> None:
        self._manager = manager

    async def aget(self, task_id: str) -> TaskRecord | None:
        """The task ``task_id``, or None: the form for async code."""
        return await self._manager.get_task(task_id)

    async def alist(self) -> list[TaskRecord]:
        """The newest 1,000 tasks, newest first: the form for async code."""
        return await self._manager.merged_list()

    def get(self, task_id: str) -> TaskRecord | None:
        """The task ``task_id``, or None, from a sync route or any thread without a loop.

        Raises:
            BlockingCallError: called on an event loop's thread (an ``async def``
                route): ``await task_manager.store.aget(task_id)`` there.
            NotStartedError: the manager is not running.
        """
        return call_blocking(
            self._manager, "store.get", "store.aget(task_id)", lambda: self.aget(task_id)
        )

    def list(self) -> list[TaskRecord]:
        """The newest 1,000 tasks, newest first, from a sync route or any thread without a loop.

        Raises:
            BlockingCallError: called on an event loop's thread (an ``async def``
                route): ``await task_manager.store.alist()`` there.
            NotStartedError: the manager is not running.
        """
        return call_blocking(self._manager, "store.list", "store.alist()", self.alist)


def call_blocking(
    manager: TaskManager,
    name: str,
    async_form: str,
    call: Callable[[], Coroutine[Any, Any, T]],
    timeout: float | None = BLOCKING_READ_TIMEOUT_S,
) -> T:
    """Run ``call()`` on the manager's loop and wait for it, from a thread without a loop.

    The one way sync code (a sync route in FastAPI's threadpool, a script's
    thread) reaches coroutines of the running manager.  ``name`` and
    ``async_form`` word the errors (``task_manager.<name>()``).

    Raises:
        BlockingCallError: this thread runs an event loop, which waiting would stall.
        NotStartedError: the manager is not running.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # no loop in this thread: waiting here blocks no one
    else:
        raise BlockingCallError(
            f"task_manager.{name}() blocks, and this thread runs an "
            f"event loop (an async def route?): use await task_manager.{async_form}"
        )
    loop = manager._loop
    if not manager.started or loop is None or loop.is_closed():
        raise NotStartedError(
            f"task_manager.{name}() reads the database through the running manager: start it "
            "first (TaskAdmin or task_manager.init_app(app), then run the app)"
        )
    future = asyncio.run_coroutine_threadsafe(call(), loop)
    try:
        return future.result(timeout)
    except BaseException:
        future.cancel()  # a caller interrupted (or timed out) leaves nothing running
        raise
