"""A thread pool of daemon threads for sync tasks.

The standard ``ThreadPoolExecutor`` joins its threads when the interpreter
exits, so one stuck sync task keeps a stopped server alive (Ctrl-C hangs).
By the time taskflow shuts down, such a task is already recorded as
``interrupted``; nothing is left for its thread to report, so the process
must be free to exit.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

T = TypeVar("T")
_Item = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None


def default_thread_count() -> int:
    """The standard library's default pool size, ``min(32, cpu_count + 4)``."""
    return min(32, (os.cpu_count() or 1) + 4)


class DaemonThreadPool(Executor):
    """``submit()`` runs callables on up to ``max_workers`` daemon threads, started on demand."""

    def __init__(
        self, max_workers: int | None = None, thread_name_prefix: str = "taskflow"
    ) -> None:
        self._max_workers = max_workers or default_thread_count()
        self._prefix = thread_name_prefix
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        # One token per idle thread, taken by the submit it will serve (as the
        # standard pool does): a thread that has just finished but not yet gone
        # back to the queue is not counted as idle twice.
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the taskflow thread pool is shut down")
            self._queue.put((future, fn, args, kwargs))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._max_workers:
                thread = threading.Thread(
                    target=self._work, name=f"{self._prefix}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:
                    future.set_exception(exc)
            del item, future, fn, args, kwargs
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in threads:
            self._queue.put(None)
        if wait:
            for thread in threads:
                thread.join()
