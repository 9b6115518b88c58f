"""The process executor: ``executor="process"`` tasks run in worker processes.

Each worker is a ``ProcessPoolExecutor`` of one process, started lazily and
reused task after task; there are at most ``max_process_workers`` of them.
One process per pool is what makes cancellation honest: a running task is
stopped by killing the one process that runs it, and the task is recorded
``cancelled`` (or ``interrupted`` at shutdown) only once that process is
gone.  A shared pool cannot stop one task without breaking all the others,
which is why fastapi-taskflow reported ``cancelled`` while the work went
on.

Workers are never started with ``fork`` from the web process: it has an
event loop, a writer, database connections and threads (some holding locks)
at any moment, and a forked child would inherit a copy of all of them in
whatever state they were, including locks held by threads that do not exist
in the child.  Where available (Linux, macOS) workers come from a
``forkserver``: a small clean process, started once, that has imported
taskflow and forks a new worker in milliseconds; elsewhere they are
``spawn``-ed, a fresh interpreter each.

The function is shipped with cloudpickle when it is installed
(``pip install "taskflow-sql[process]"``), else pickled by reference (its
module must be importable by the worker).  Arguments go as plain pickles;
they were checked to be storable when the task was added.  ``task_log()``
inside the worker sends each line at once through a pipe of the worker's
own, read by a thread in the web process: lines are stored while the task
runs (so a task killed later keeps what it logged), and the outcome waits
until every line it sent is in.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection
from typing import Any

from taskflow.context import get_task_context, task_log
from taskflow.observe.tracing import carrier_for_worker
from taskflow.runtime.priority import Slots
from taskflow.runtime.process_worker import (
    LogLine,
    Outcome,
    WorkerTraceback,
    init_worker,
    run_in_worker,
    ship_function,
)

__all__ = ["ProcessExecutor", "default_process_workers", "ship_function"]

logger = logging.getLogger("taskflow.process")

KILL_WAIT_S = 5.0
LOG_CATCH_UP_S = 5.0
START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
_KILL_SIGNAL = getattr(signal, "SIGKILL", signal.SIGTERM)


def default_process_workers() -> int:
    """``min(4, cpu_count)``: each worker is a whole interpreter, so keep the default small."""
    return min(4, os.cpu_count() or 1)


# -- in the web process ----------------------------------------------------------


class _Worker:
    """One worker process, inside a pool of one, and the reader of its log pipe."""

    def __init__(self, pool: ProcessPoolExecutor, pid: int, logs: Connection) -> None:
        self.pool = pool
        self.pid = pid
        self.loop = asyncio.get_running_loop()
        # The running task's context (a copy, holding its task_log sink) while
        # one runs; lines are delivered into it on the event loop.
        self.context: contextvars.Context | None = None
        self.delivered = 0
        self._expected = 0
        self._caught_up: asyncio.Future[None] | None = None
        self._reader = threading.Thread(
            target=self._read, args=(logs,), name=f"taskflow-worker-{pid}-logs", daemon=True
        )
        self._reader.start()

    def start_task(self) -> None:
        self.context = contextvars.copy_context()
        self.delivered = 0

    def _read(self, logs: Connection) -> None:
        with logs:
            while True:
                try:
                    line = logs.recv()
                except (EOFError, OSError):
                    return  # the worker process is gone
                try:
                    self.loop.call_soon_threadsafe(self._deliver, line)
                except RuntimeError:
                    return  # the event loop is closed

    def _deliver(self, line: LogLine) -> None:
        level, message, extra = line
        if self.context is not None:
            self.context.run(task_log, message, level=level, **extra)
        self.delivered += 1
        waiter = self._caught_up
        if waiter is not None and self.delivered >= self._expected and not waiter.done():
            waiter.set_result(None)

    async def catch_up(self, sent: int) -> None:
        """Wait (briefly) until every line the task sent has been delivered."""
        if self.delivered < sent:
            self._expected = sent
            self._caught_up = self.loop.create_future()
            await asyncio.wait({self._caught_up}, timeout=LOG_CATCH_UP_S)
            self._caught_up = None
        self.context = None


class ProcessExecutor:
    """Runs functions in up to ``max_workers`` worker processes, each killable on its own."""

    name = "process"

    def __init__(self, max_workers: int | None = None) -> None:
        size = max_workers or default_process_workers()
        self.slots = Slots(size)
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._reserved: dict[str, _Worker] = {}
        self._context = multiprocessing.get_context(START_METHOD)
        if START_METHOD == "forkserver":
            # Imported once by the server, so a new worker starts warm (the
            # main module too, as by default: functions may be defined there).
            self._context.set_forkserver_preload(["__main__", "taskflow.runtime.process_worker"])

    @property
    def worker_pids(self) -> list[int]:
        """The process ids of the live workers (for monitoring and tests)."""
        workers = [*self._idle, *self._busy, *self._reserved.values()]
        return [worker.pid for worker in workers]

    async def prepare(self, task_id: str) -> None:
        """Have a worker ready for ``task_id`` (starting a process if none is idle).

        Called once the task holds a slot and before it is marked running, so
        a process start-up counts neither in its duration nor its timeout.
        """
        if task_id not in self._reserved:
            worker = await self._checkout()
            self._busy.discard(worker)
            self._reserved[task_id] = worker

    async def run(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        shipped = ship_function(func)
        current = get_task_context()
        context = (
            (current.task_id, current.func_name, current.attempt, dict(current.tags))
            if current is not None
            else ("", getattr(func, "__name__", "task"), 0, {})
        )
        reserved = self._reserved.pop(current.task_id, None) if current is not None else None
        if reserved is not None:
            worker = reserved
            self._busy.add(worker)
        else:
            worker = await self._checkout()
        worker.start_task()
        try:
            future = worker.pool.submit(
                run_in_worker, shipped, args, kwargs, context, carrier_for_worker()
            )
            outcome: Outcome = await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            # Cancelled, timed out or shut down: the task stops only when its
            # process does, so stop the process before reporting anything.
            await self._kill(worker)
            raise
        except BrokenProcessPool as exc:
            await self._kill(worker)
            raise RuntimeError(
                "the worker process running this task died (killed, or crashed in native code)"
            ) from exc
        except BaseException:
            await self._kill(worker)
            raise
        self._busy.discard(worker)
        self._idle.append(worker)
        # The work is over: a cancel arriving now must not report "cancelled"
        # for a task that finished, so the last log lines are awaited through it.
        await _finish_regardless(worker.catch_up(outcome.lines_sent))
        for level, message, extra in outcome.logs:
            task_log(message, level=level, **extra)
        if outcome.ok:
            return outcome.result
        assert outcome.error is not None
        raise outcome.error from WorkerTraceback(outcome.worker_traceback)

    async def _checkout(self) -> _Worker:
        if self._idle:
            worker = self._idle.pop()
        else:
            reader, writer = self._context.Pipe(duplex=False)
            pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=self._context,
                initializer=init_worker,
                initargs=(writer,),
            )
            try:
                # Starts the process and tells us which one it is, so that this
                # task, and only this task, can be stopped by killing it.
                pid = await asyncio.wrap_future(pool.submit(os.getpid))
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                reader.close()
                raise
            finally:
                writer.close()  # the worker has its own copy: EOF when it exits
            worker = _Worker(pool, pid, reader)
        self._busy.add(worker)
        return worker

    async def _kill(self, worker: _Worker) -> None:
        """Kill a worker's process and wait (off the loop) until it is reaped."""
        self._busy.discard(worker)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(worker.pid, _KILL_SIGNAL)
        await _join(worker.pool, KILL_WAIT_S)

    async def close(self) -> None:
        """Stop every worker: idle ones exit, any still busy are killed.

        The manager has already waited ``process_shutdown_timeout`` for
        running tasks and cancelled the rest (which kills their workers), so
        nothing here waits for task code.
        """
        idle, busy = [*self._idle, *self._reserved.values()], list(self._busy)
        self._idle, self._busy, self._reserved = [], set(), {}
        for worker in busy:
            await self._kill(worker)
        for worker in idle:
            if not await _join(worker.pool, KILL_WAIT_S):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(worker.pid, _KILL_SIGNAL)
                await _join(worker.pool, KILL_WAIT_S)


async def _finish_regardless(awaitable: Awaitable[None]) -> None:
    """Await ``awaitable`` to its end, absorbing cancellation of the caller meanwhile."""
    inner = asyncio.ensure_future(awaitable)
    while not inner.done():
        try:
            await asyncio.shield(inner)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and hasattr(current, "uncancel"):  # Python 3.11+
                current.uncancel()
    if not inner.cancelled():
        inner.result()


async def _join(pool: ProcessPoolExecutor, timeout: float) -> bool:
    """``pool.shutdown(wait=True)`` in a thread, at most ``timeout`` seconds; True if done."""
    waiter = asyncio.ensure_future(asyncio.to_thread(pool.shutdown, True, cancel_futures=True))
    done, _pending = await asyncio.wait({waiter}, timeout=timeout)
    if not done:
        logger.warning("a taskflow worker process did not stop within %.0fs", timeout)
    return bool(done)
