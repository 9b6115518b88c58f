"""What every group of ``TaskManager`` methods may use, declared once for the type checker."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from taskflow.observe.observer import LoggerChain
from taskflow.registry import TaskRegistry
from taskflow.repository.base import TaskRepository
from taskflow.runtime.acknowledgement import AcknowledgeMode
from taskflow.runtime.assembly import Runtime, RuntimeSettings
from taskflow.runtime.bridge import BlockingBridge
from taskflow.runtime.changes import ChangeFeed, RemoteChanges
from taskflow.runtime.local_tasks import LocalTasks
from taskflow.runtime.readiness import DatabaseConnector
from taskflow.runtime.retention import RetentionService
from taskflow.runtime.scheduler import PeriodicScheduler
from taskflow.runtime.submission import Submission
from taskflow.serialization import Cipher

if TYPE_CHECKING:
    from fastapi import BackgroundTasks

    from taskflow.web.background import ManagedBackgroundTasks


class Service(Protocol):
    """Something that runs while the manager runs."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class ManagerParts:
    """What ``TaskManager.__init__`` sets; the method groups read these."""

    # Options
    create_tables: bool
    lease_seconds: float
    poll_interval: float
    shutdown_grace: float
    process_shutdown_timeout: float
    acknowledge_mode: AcknowledgeMode
    acknowledge_timeout: float
    retention_days: float | None
    freeze_gc_at_startup: bool
    drain_after_requests: bool
    tracer_provider: Any
    # Parts
    instance_id: str
    fernet: Cipher | None
    logger: LoggerChain | None
    registry: TaskRegistry
    repository: TaskRepository
    changes: ChangeFeed
    retention: RetentionService | None
    local_tasks: LocalTasks
    submission: Submission
    runtime: Runtime | None
    _bridge: BlockingBridge
    _scheduler: PeriodicScheduler | None
    _services: list[Service]
    _lifecycle_hooks: list[tuple[Callable[[], None], Callable[[], None]]]
    _connector: DatabaseConnector | None
    _remote_changes: RemoteChanges | None
    _loop: asyncio.AbstractEventLoop | None
    _started: bool
    _stopping: bool
    _apps: set[int]
    _inject_apps: set[int]
    _dependency: Callable[[BackgroundTasks], ManagedBackgroundTasks] | None

    def runtime_settings(self) -> RuntimeSettings:
        """The options a start builds its runtime with (``TaskManager`` gives them)."""
        raise NotImplementedError

    def spawn(
        self, coro: Coroutine[Any, Any, Any], context: contextvars.Context | None = None
    ) -> asyncio.Task[Any]:
        """Run ``coro`` as a background task owned (and awaited at shutdown) by the manager.

        With ``context``, the task runs in a copy of it (the request's context vars).
        """
        return self.local_tasks.spawn(coro, context)

    def wake(self) -> None:
        """Make the dispatcher look for work now; callable from any thread."""
        runtime, loop = self.runtime, self._loop
        if runtime is None or loop is None or loop.is_closed():
            return
        if self.local_tasks.on_loop_thread():
            runtime.dispatcher.wake()
        else:
            loop.call_soon_threadsafe(runtime.dispatcher.wake)

    async def flush(self) -> None:
        """Wait until every write made so far is committed."""
        if self.runtime is not None:
            await self.runtime.writer.flush()
