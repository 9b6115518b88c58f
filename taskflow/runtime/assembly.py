"""``Runtime``: the parts one start of a manager runs on, built together and stopped together.

Executors, the group-commit writer, the runner and the dispatcher live
exactly as long as one ``startup()`` / ``shutdown()`` cycle; a restarted
manager builds new ones (its instance id is new too).  Building them in one
place keeps the wiring between them (who calls whom back) readable, and
gives the manager one object to hold instead of four optional attributes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from taskflow.models import TaskRecord
from taskflow.observe.observer import LoggerChain
from taskflow.observe.tracing import task_tracer
from taskflow.registry import TaskRegistry
from taskflow.repository.base import TaskRepository
from taskflow.runtime.changes import ChangeFeed
from taskflow.runtime.dispatcher import Dispatcher
from taskflow.runtime.executors import AsyncExecutor, ThreadExecutor
from taskflow.runtime.instance import describe_instance
from taskflow.runtime.local_tasks import LocalTasks
from taskflow.runtime.priority import Slots
from taskflow.runtime.processes import ProcessExecutor
from taskflow.runtime.runner import Executor, TaskRunner
from taskflow.runtime.shutdown import release_held
from taskflow.runtime.timing import WakeAlarm
from taskflow.runtime.writer import GroupCommitWriter
from taskflow.serialization import Cipher

logger = logging.getLogger("taskflow")


@dataclass(frozen=True)
class RuntimeSettings:
    """The manager options the runtime's parts are built with."""

    max_concurrent_tasks: int | None
    max_sync_threads: int | None
    max_process_workers: int | None
    write_buffer_size: int
    commit_interval: float
    lease_seconds: float
    heartbeat_interval: float
    poll_interval: float


@dataclass(frozen=True)
class Runtime:
    """One start's executors (by name), writer, runner and dispatcher."""

    executors: dict[str, Executor]
    writer: GroupCommitWriter
    runner: TaskRunner
    dispatcher: Dispatcher

    def database_problem(self) -> str | None:
        """Why the database cannot be counted on now (claims or writes fail), or None."""
        if not self.dispatcher.reachable:
            return "the database is unreachable: heartbeats and claims fail"
        if self.writer.failing:
            return "the database is not accepting writes"
        return None

    async def begin(self) -> None:
        """Start writing and claiming, once the database has been reached."""
        self.writer.set_unreachable(False)
        # Before the instance registers: its first claims hand the writer work.
        self.writer.start()
        await self.dispatcher.start()

    async def release_and_stop_writer(
        self, tasks: LocalTasks, repository: TaskRepository, *, connected: bool
    ) -> None:
        """Write down every task still held, commit what the writer holds, and stop it."""
        writer = self.writer
        released = release_held(tasks.held, writer, self.runner)
        if connected or not writer.pending:
            await writer.stop()
        else:  # never started: what it holds cannot be written (the error says how much)
            await writer.stop(timeout=0.0)
        if released and connected:
            with contextlib.suppress(Exception):  # polling picks them up regardless
                await repository.announce_work()

    async def close_executors(self) -> None:
        for executor in self.executors.values():
            try:  # never blocks the loop: stuck threads are left, stuck processes killed
                await executor.close()
            except Exception:
                logger.exception("taskflow %s executor failed to close", executor.name)


def assemble_runtime(
    settings: RuntimeSettings,
    *,
    repository: TaskRepository,
    registry: TaskRegistry,
    tasks: LocalTasks,
    instance_id: str,
    cipher: Cipher | None,
    changes: ChangeFeed,
    events: LoggerChain | None,
    tracer_provider: Any,
) -> Runtime:
    """Build one start's parts and bind ``tasks`` to them; none of them runs yet."""
    executors: dict[str, Executor] = {
        "async": AsyncExecutor(settings.max_concurrent_tasks),
        "thread": ThreadExecutor(settings.max_sync_threads),
        "process": ProcessExecutor(settings.max_process_workers),  # starts no process yet
    }
    writer = GroupCommitWriter(
        repository,
        max_buffer=settings.write_buffer_size,
        commit_interval=settings.commit_interval,
        on_fenced=tasks.drop_fenced,
        is_transient=repository.is_transient,
        changes=changes,
        lease=timedelta(seconds=settings.lease_seconds),
    )
    runner = TaskRunner(
        writer,
        executors,
        spawn=tasks.spawn,
        on_finished=tasks.forget,
        lease_seconds=settings.lease_seconds,
        accepting=tasks.accepting,
        events=events,
        tracer=task_tracer(tracer_provider),
    )

    def adopt(records: list[TaskRecord], slots: Slots | None = None) -> None:
        # Reads the registry at each claim: functions registered after the start count.
        tasks.adopt(records, slots, registry=registry, cipher=cipher)

    dispatcher = Dispatcher(
        repository,
        describe_instance(instance_id),
        on_claimed=adopt,
        capacity=tasks.room,
        start_slots={name: executors[name].slots for name in started_by_claim(registry)},
        on_started=adopt,
        held=tasks.epochs,
        on_lost=tasks.drop_fenced,
        lease_seconds=settings.lease_seconds,
        heartbeat_interval=settings.heartbeat_interval,
        poll_max=settings.poll_interval,
    )
    tasks.bind(asyncio.get_running_loop(), writer)
    tasks.runner = runner
    tasks.alarm = WakeAlarm(dispatcher.wake)
    return Runtime(executors=executors, writer=writer, runner=runner, dispatcher=dispatcher)


def started_by_claim(registry: TaskRegistry) -> list[str]:
    """The executors whose claims also record the start (see the dispatcher).

    Only those some registered function runs on, so an instance does not
    repeat a claim that cannot find anything.  Not process tasks: a worker
    process may have to start first, and that must not count as running.
    """
    used = {target.executor for target in registry}
    return [name for name in ("async", "thread") if name in used]
