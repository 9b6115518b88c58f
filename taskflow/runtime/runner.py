"""One task's attempts: context, execution, retries and the transitions between them.

Every state change is handed to the group-commit writer as it happens.  Two
of them are waited for: the task's own row before its first attempt, and
each attempt's ``running`` state before its function is called.  So after
any crash the row tells the truth: ``pending`` means the function was never
called and any instance may run it; ``running`` means it may have been, and
recovery records that.  A retry's delay is written as the row's ``run_at``
before the runner waits for it, so a restart loses no retry.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from taskflow.context import TaskContext, Tokens, bind, unbind
from taskflow.exceptions import WriterStoppedError
from taskflow.models import TaskLogEntry, TaskRecord, TaskStatus, utcnow
from taskflow.observe.events import LifecycleEvent, LogEvent
from taskflow.observe.observer import LoggerChain
from taskflow.observe.tracing import TaskTracer
from taskflow.registry import RegisteredTask
from taskflow.repository.base import BatchOutcome
from taskflow.runtime.priority import Slots
from taskflow.runtime.retry import RetryPolicy
from taskflow.runtime.transitions import (
    cancel,
    cancel_attempt,
    fail,
    schedule_retry,
    start_attempt,
    start_claimed,
    succeed,
    undo_start,
)
from taskflow.runtime.writer import GroupCommitWriter
from taskflow.serialization import json_extra, json_result
from taskflow.storable import MAX_TRACE_CHARS, storable_text

logger = logging.getLogger("taskflow.runner")


class Executor(Protocol):
    """Where functions run; a task holds one of its ``slots`` while it runs."""

    name: str
    slots: Slots

    @property
    def prepare(self) -> Callable[[str], Awaitable[None]] | None:
        """None, or what readies the executor for a task before it counts as started."""

    async def run(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any: ...

    async def close(self) -> None: ...


@dataclass(eq=False, slots=True)
class LocalTask:
    """A task this instance holds: its record, its function and its live arguments."""

    record: TaskRecord
    target: RegisteredTask
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    context: contextvars.Context | None = None
    inserted: asyncio.Future[BatchOutcome] | None = None
    # False while a row submitted from a worker thread waits to reach the writer.
    accepted: bool = True
    handle: asyncio.Task[Any] | None = None
    cancel_requested: bool = False
    # Handed to the runner (after the response, at once, or by a claim): a
    # second hand-off of the same task is ignored, so it never runs twice.
    dispatched: bool = False
    # Sleeping until its next attempt: shutdown releases it rather than waiting.
    retry_waiting: bool = False
    # Meant to start at once: its commits do not wait out the commit interval.
    urgent: bool = False
    # Set when the claim that brought the task here recorded its start: the
    # row already says ``running`` since then, so its first attempt calls the
    # function without committing the start again.
    claimed_start: datetime | None = None
    # Holds an executor slot reserved for it before that claim.
    holds_slot: bool = False
    # Due later (``run_at=`` / ``delay=``): its row is left to the claims once
    # committed, never held here (see ``runtime.timing``).
    deferred: bool = False
    # Once the first attempt is over, the next task of the same request may start.
    # The event is made only when someone waits: most tasks have no successor.
    is_settled: bool = False
    _settled: asyncio.Event | None = None

    def mark_settled(self) -> None:
        self.is_settled = True
        if self._settled is not None:
            self._settled.set()

    async def wait_settled(self) -> None:
        if self.is_settled:
            return
        if self._settled is None:
            self._settled = asyncio.Event()
        await self._settled.wait()


Spawn = Callable[[Coroutine[Any, Any, None], contextvars.Context | None], "asyncio.Task[Any]"]


class TaskRunner:
    """Runs the attempts of local tasks and records each transition."""

    def __init__(
        self,
        writer: GroupCommitWriter,
        executors: dict[str, Executor],
        *,
        spawn: Spawn,
        on_finished: Callable[[LocalTask], None],
        lease_seconds: float,
        accepting: Callable[[], bool] = lambda: True,
        events: LoggerChain | None = None,
        tracer: TaskTracer | None = None,
    ) -> None:
        self._writer = writer
        self._executors = executors
        self._spawn = spawn
        self._on_finished = on_finished
        self._lease = timedelta(seconds=lease_seconds)
        self._accepting = accepting
        self._events = events
        self._tracer = tracer
        self._random = random.Random()  # retry jitter only

    async def run(self, task: LocalTask) -> None:
        """Run the next attempt; a retry is scheduled in the background, not awaited."""
        try:
            await self._run(task)
        finally:
            if task.holds_slot:  # never reached its attempt (shutdown, cancelled)
                task.holds_slot = False
                self._executors[task.target.executor].slots.release()
            task.mark_settled()

    async def _run(self, task: LocalTask) -> None:
        if task.inserted is not None:
            # Shielded: the commit is shared by the batch, and cancelling this
            # task (a cancel request, shutdown) must not cancel it for the others.
            # Kept (not cleared): the request's acknowledgement may still read it.
            outcome = await asyncio.shield(task.inserted)
            if task.record.task_id in outcome.rejected:
                logger.error("task %s was rejected by the database; not run", task.record.task_id)
                self._finish(task)
                return
        if task.record.status is not TaskStatus.PENDING:
            self._finish(task)  # cancelled or taken over while it waited
            return
        if not self._accepting():
            return  # shutting down: left pending, and released for another instance
        delay = await self._attempt(task)
        if delay is None and task.record.status is TaskStatus.PENDING:
            return  # not started after all (shutting down): stays held, to be released
        if delay is None:
            self._finish(task)
        else:
            task.handle = self._spawn(self._retry_after(task, delay), task.context)

    async def _retry_after(self, task: LocalTask, delay: float) -> None:
        task.retry_waiting = True
        try:
            await asyncio.sleep(delay)
        finally:
            task.retry_waiting = False
        await self.run(task)

    async def _attempt(self, task: LocalTask) -> float | None:
        """One attempt; returns the delay before the next one, or None when done.

        The task is marked ``running`` only once it holds an executor slot:
        while it waits for one (in priority order) it is still ``pending``,
        and its duration starts when it really starts.
        """
        record = task.record
        executor = self._executors[task.target.executor]
        slots = executor.slots
        if task.holds_slot:
            task.holds_slot = False  # the slot is this attempt's now
        elif not slots.try_acquire():
            await slots.acquire(record.priority)
        try:
            if executor.prepare is not None:
                # A worker process to start: part of the wait, not of the run.
                await executor.prepare(record.task_id)
            if record.status is not TaskStatus.PENDING or not self._accepting():
                return None
            if not await self._start_recorded(task, executor.name):
                return None
            span = self._tracer.start(record, executor.name) if self._tracer else None
            try:
                return await self._call(task, executor)
            finally:
                if span is not None and self._tracer is not None:
                    self._tracer.end(span, record.status.value, record.error)
        finally:
            slots.release()

    async def _call(self, task: LocalTask, executor: Executor) -> float | None:
        record = task.record
        tokens = self._bind_attempt(task)
        started = time.perf_counter()
        timeout = task.target.config.timeout
        try:
            call = executor.run(task.target.func, task.args, task.kwargs)
            result = await (call if timeout is None else asyncio.wait_for(call, timeout))
        except asyncio.CancelledError:
            if not task.cancel_requested:
                raise  # shutdown: recorded as interrupted by the manager
            self._record_cancelled(task, time.perf_counter() - started)
            return None
        except (TimeoutError, asyncio.TimeoutError) as exc:
            if timeout is not None and not str(exc):
                exc = TimeoutError(f"the task ran longer than its timeout of {timeout:g}s")
            return self._record_failure(task, exc, time.perf_counter() - started)
        except Exception as exc:
            return self._record_failure(task, exc, time.perf_counter() - started)
        finally:
            unbind(tokens)
        self._record_success(record, result, time.perf_counter() - started)
        return None

    async def _start_recorded(self, task: LocalTask, executor: str) -> bool:
        """Mark the attempt ``running`` and wait until that is committed; False: do not start.

        The function is called only once the database says the attempt
        started: a crash before the commit leaves the row ``pending`` (never
        started, safe for any instance to run); a crash after it leaves it
        ``running``, which recovery records as interrupted.  A commit that
        finds the lease taken over or the task cancelled elsewhere (fenced)
        means another instance owns it now, and it must not start here.
        """
        record = task.record
        if task.claimed_start is not None:
            # Recorded by the claim (see the dispatcher): nothing more to commit.
            start_claimed(record, task.claimed_start)
            task.claimed_start = None
            self.announce(record)
            return True
        start_attempt(record, utcnow(), executor, self._lease)
        committed = self._writer.update(record)
        if task.urgent:
            # Meant to start at once (eager, prioritised, enqueued): not held
            # back by the commit interval.  Others share the next group commit.
            self._writer.hurry()
        try:
            outcome = await asyncio.shield(committed)
        except WriterStoppedError:
            _not_started(record)  # never committed: still pending in the database
            return False
        except asyncio.CancelledError:
            if not task.cancel_requested:
                _not_started(record)  # shutdown: released as pending, for another instance
                raise
            if record.status is TaskStatus.RUNNING:  # else fenced meanwhile: it ended there
                cancel(record, utcnow(), "cancelled before it started")
                self._writer.update(record)
                self.announce(record)
            return False
        if record.task_id in outcome.fenced or record.status is not TaskStatus.RUNNING:
            return False
        self.announce(record)
        return True

    def announce(self, record: TaskRecord) -> None:
        """Tell observers about the record's current status (no-op without observers)."""
        if self._events is not None:
            self._events.emit(lifecycle_event(record))

    def _bind_attempt(self, task: LocalTask) -> Tokens:
        # Bound in the caller's context and reset afterwards: after-response
        # tasks share the request's context, and must not see each other's.
        record = task.record
        info = TaskContext(record.task_id, record.func_name, record.retries_used, dict(record.tags))
        attempt = record.retries_used
        writer = self._writer
        events = self._events

        def sink(level: str, message: str, extra: dict[str, Any]) -> None:
            moment = utcnow()
            message, extra = storable_text(message), json_extra(extra)
            writer.log(TaskLogEntry(record.task_id, attempt, level, message, moment, extra))
            if events is not None:
                events.emit(
                    LogEvent(
                        record.task_id,
                        record.func_name,
                        message,
                        level,
                        moment,
                        attempt,
                        dict(record.tags),
                        dict(extra),
                    )
                )

        return bind(info, sink)

    # An attempt's end is recorded only while its record says running: a fence
    # (the task was cancelled or taken over elsewhere) may have ended it here
    # while the function ran, and nothing of this instance's stands after that.

    def _record_success(self, record: TaskRecord, result: Any, elapsed: float) -> None:
        if record.status is not TaskStatus.RUNNING:
            return
        succeed(record, utcnow(), elapsed, json_result(result))
        self._writer.update(record)
        self.announce(record)

    def _record_cancelled(self, task: LocalTask, elapsed: float) -> None:
        record = task.record
        if record.status is not TaskStatus.RUNNING:
            return
        error = "cancelled while running"
        if record.executor == "thread":
            error += "; a thread cannot be stopped, so its code may still be running"
        elif record.executor == "process":
            error += "; its worker process was killed"
        cancel_attempt(record, utcnow(), elapsed, error)
        self._writer.update(record)
        self.announce(record)

    def _record_failure(self, task: LocalTask, exc: Exception, elapsed: float) -> float | None:
        record = task.record
        if record.status is not TaskStatus.RUNNING:
            return None
        now = utcnow()
        # Cleaned here: a message the database refused would leave the task unfinished.
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        record.error = storable_text(error)
        record.stacktrace = storable_text(trace, MAX_TRACE_CHARS)
        # The row's own count holds: a row keeps the retries it was created with.
        policy = RetryPolicy.from_config(task.target.config, retries=record.max_retries)
        if policy.should_retry(exc, record.retries_used):
            delay = policy.delay_for(record.retries_used, self._random)
            schedule_retry(record, now, delay, elapsed, self._lease)
            self._writer.update(record)
            return delay
        fail(record, now, elapsed)
        self._writer.update(record)
        self.announce(record)
        return None

    def _finish(self, task: LocalTask) -> None:
        self._on_finished(task)


def _not_started(record: TaskRecord) -> None:
    # The running state was never committed: what is held must say pending
    # again, so that shutdown releases the task instead of recording an
    # interruption of an attempt that never began.  Not a task fenced while
    # it waited for that commit: that end stands.
    if record.status is TaskStatus.RUNNING:
        undo_start(record)


def lifecycle_event(record: TaskRecord) -> LifecycleEvent:
    """The observers' view of a record's current status."""
    return LifecycleEvent(
        task_id=record.task_id,
        func_name=record.func_name,
        status=record.status,
        timestamp=record.updated_at,
        attempt=record.retries_used,
        retries_used=record.retries_used,
        duration=record.duration if record.status.is_terminal else None,
        error=record.error,
        stacktrace=record.stacktrace,
        tags=dict(record.tags),
    )
