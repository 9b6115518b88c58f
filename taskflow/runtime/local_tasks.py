"""``LocalTasks``: the tasks this instance holds, and how each gets from its commit to its runner.

One object owns the dict of held tasks and the set of background asyncio
tasks, and is the only one that changes them; the dispatcher, the writer,
cancellation and shutdown are handed its methods or read its dict.  The
per-task path (``dispatch``, ``hand_off``) is kept flat on purpose: it runs
for every request, so every call layer added to it is paid per task.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import sys
import threading
from collections.abc import Coroutine
from typing import Any

from taskflow.models import TaskRecord
from taskflow.registry import TaskRegistry
from taskflow.runtime.holdings import adopt_claimed, drop_fenced, held_epochs, room_to_adopt
from taskflow.runtime.priority import Slots
from taskflow.runtime.runner import LocalTask, TaskRunner
from taskflow.runtime.timing import WakeAlarm
from taskflow.runtime.writer import GroupCommitWriter
from taskflow.serialization import Cipher

logger = logging.getLogger("taskflow")

# ``background`` is swept of finished tasks once it holds this many (or
# twice as many as after the last sweep).
BACKGROUND_SWEEP_MIN = 1024


class LocalTasks:
    """The tasks held by this instance, by id, and the asyncio tasks that run them.

    Lives as long as its manager; ``bind()`` gives it each start's event
    loop, writer and runner.
    """

    def __init__(self) -> None:
        self.held: dict[str, LocalTask] = {}
        self.background: set[asyncio.Task[Any]] = set()
        # Runner tasks leave ``background`` themselves; one cancelled before its
        # first step never runs that code, so the set is swept when it has grown.
        self._sweep_at = BACKGROUND_SWEEP_MIN
        # After-response tasks waiting for their row's commit, by commit: one
        # callback per commit starts them all.
        self._starts_by_commit: dict[asyncio.Future[Any], list[LocalTask]] = {}
        # Past the shutdown grace: no attempt starts any more.
        self.releasing = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self.writer: GroupCommitWriter | None = None
        self.runner: TaskRunner | None = None
        self.alarm: WakeAlarm | None = None

    def bind(self, loop: asyncio.AbstractEventLoop, writer: GroupCommitWriter) -> None:
        """Take this start's loop (the current thread's) and writer; ``runner`` follows."""
        self.loop = loop
        self._loop_thread = threading.get_ident()
        self.writer = writer
        self.releasing = False

    def on_loop_thread(self) -> bool:
        return threading.get_ident() == self._loop_thread

    # -- from commit to runner -------------------------------------------------

    def dispatch(
        self, local: LocalTask, after: LocalTask | None = None, *, hurry: bool = False
    ) -> None:
        """Run a submitted task in the background once its row is committed.

        ``after``: an earlier task of the same request whose first attempt
        must be over first, so one request's tasks run in the order added,
        as FastAPI runs them.  ``hurry``: commit the row now rather than at
        the next group commit (the task is meant to start at once).
        Callable from any thread.
        """
        if not self.on_loop_thread():
            assert self.loop is not None
            self.loop.call_soon_threadsafe(
                functools.partial(self.dispatch, local, after, hurry=hurry)
            )
            return
        if local.dispatched:
            return  # handed over already (by its request's end, or by drain())
        local.dispatched = True
        if local.deferred:
            self._leave_to_claims(local, hurry)
            return
        if hurry and self.writer is not None:
            local.urgent = True
            self.writer.hurry()
        inserted = local.inserted
        if after is None and local.accepted and inserted is not None and not inserted.done():
            # Started by the commit rather than started to wait for it: one
            # asyncio step less per task, and no task object while it waits.
            waiting = self._starts_by_commit.get(inserted)
            if waiting is None:
                self._starts_by_commit[inserted] = [local]
                inserted.add_done_callback(self._start_committed)
            else:
                waiting.append(local)
            return
        self._spawn_local(local, after)

    def _leave_to_claims(self, local: LocalTask, hurry: bool) -> None:
        # A task for later is not held: whichever instance's claim finds it
        # due runs it.  Nothing in its request waits for it.
        local.mark_settled()
        if hurry and self.writer is not None:
            self.writer.hurry()
        alarm, when = self.alarm, local.record.run_at
        if alarm is None:
            return
        inserted = local.inserted
        if inserted is None or inserted.done():
            alarm.set(when)
        else:
            inserted.add_done_callback(lambda _commit: alarm.set(when))

    async def hand_off(self, local: LocalTask, after: LocalTask | None = None) -> None:
        """What FastAPI runs after the response: hand the task over and return.

        The request does not wait for the commit or the task, so many
        requests' rows share one commit.  When the writer is due, one yield
        to the event loop gives it (and the tasks it releases) a turn, even
        when requests arrive back to back without any I/O wait.
        """
        self.dispatch(local, after)
        if self.writer is not None and self.writer.overdue():
            await asyncio.sleep(0)

    def _start_committed(self, commit: asyncio.Future[Any]) -> None:
        for local in self._starts_by_commit.pop(commit, ()):
            if self.releasing:
                # It stays pending and is released for another instance; a plain
                # task queued after it in its request must not wait for it.
                local.mark_settled()
                continue
            try:
                self._spawn_local(local, None)
            except Exception:
                # One task that cannot start (a task factory refusing it) must
                # not keep the others of its commit from starting.  Its row stays
                # pending under its lease; when that expires, recovery runs it.
                logger.exception("taskflow could not start task %s", local.record.task_id)
                self.held.pop(local.record.task_id, None)
                local.mark_settled()

    def _spawn_local(self, local: LocalTask, after: LocalTask | None) -> None:
        # Not ``spawn()``: the runner task leaves ``background`` itself and
        # logs its own failure, which saves a done-callback (an event-loop
        # step) per task.
        task = create_task(self._run_local(local, after), local.context)
        if task.done():
            return  # finished in create_task (an eager task factory); a retry set its own handle
        local.handle = task
        background = self.background
        background.add(task)
        if len(background) >= self._sweep_at:
            self._sweep_background()

    async def _run_local(self, local: LocalTask, after: LocalTask | None) -> None:
        # Not ``local.handle``, which a retry replaces with its own task.
        this_task = asyncio.current_task()
        try:
            if after is not None:
                await after.wait_settled()
            while not local.accepted:
                # Only rows submitted from a worker thread wait here, for one loop turn.
                await asyncio.sleep(0)
            assert self.runner is not None
            await self.runner.run(local)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("taskflow background job failed")
        finally:
            if this_task is not None:
                self.background.discard(this_task)

    def _sweep_background(self) -> None:
        # In place: shutdown holds this very set while it waits for the tasks in it.
        self.background.difference_update([task for task in self.background if task.done()])
        self._sweep_at = max(BACKGROUND_SWEEP_MIN, 2 * len(self.background))

    def spawn(
        self, coro: Coroutine[Any, Any, Any], context: contextvars.Context | None = None
    ) -> asyncio.Task[Any]:
        """Run ``coro`` as a background task, awaited at shutdown like the task runners."""
        task = create_task(coro, context)
        self.background.add(task)
        task.add_done_callback(self._background_done)
        return task

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self.background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("taskflow background job failed", exc_info=task.exception())

    # -- what the runner, the dispatcher and shutdown ask ----------------------

    def accepting(self) -> bool:
        """Whether attempts may still start (not past the shutdown grace)."""
        return not self.releasing

    def stop_starting(self) -> None:
        self.releasing = True

    def forget(self, local: LocalTask) -> None:
        """Stop holding a task: it finished, or it was never created."""
        self.held.pop(local.record.task_id, None)

    def room(self) -> int:
        return room_to_adopt(self.held)

    def epochs(self) -> dict[str, int]:
        return held_epochs(self.held)

    def drop_fenced(self, task_ids: frozenset[str]) -> None:
        drop_fenced(self.held, task_ids)

    def adopt(
        self,
        records: list[TaskRecord],
        slots: Slots | None,
        *,
        registry: TaskRegistry,
        cipher: Cipher | None,
    ) -> None:
        """Hold the rows a claim took; ``slots``: their claim also recorded the start."""
        assert self.writer is not None
        adopt_claimed(
            records,
            started_with=slots,
            held=self.held,
            registry=registry,
            cipher=cipher,
            writer=self.writer,
            runner=self.runner,
            dispatch=self.dispatch,
        )

    async def drain(self) -> None:
        """Wait until no task is held and no background task runs.

        Tasks that nothing would run (added outside a request, in an app
        without the request hold) are started first, so this returns for
        them too.
        """
        for local in list(self.held.values()):
            if not local.dispatched and local.accepted:
                self.dispatch(local)
        while self.held or any(not task.done() for task in self.background):
            await asyncio.sleep(0.001)


def create_task(
    coro: Coroutine[Any, Any, Any], context: contextvars.Context | None
) -> asyncio.Task[Any]:
    """A task on the running loop, in ``context`` when given (the request's context vars)."""
    loop = asyncio.get_running_loop()
    if context is None:
        return loop.create_task(coro)
    if sys.version_info >= (3, 11):
        # The context is this task's private copy already (made at add_task).
        return loop.create_task(coro, context=context)
    return context.run(loop.create_task, coro)
