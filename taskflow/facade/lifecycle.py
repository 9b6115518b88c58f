"""Starting and stopping: ``startup()``, ``shutdown()``, readiness, services and hooks.

The order of the steps is the point of this module: connect before writing,
start the writer before the instance registers, end live streams before the
services, let accepted tasks finish before anything is released, and write
down every held task before the writer stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from taskflow.facade.parts import ManagerParts, Service
from taskflow.runtime.assembly import assemble_runtime
from taskflow.runtime.changes import RemoteChanges
from taskflow.runtime.heap import freeze_startup_heap
from taskflow.runtime.instance import new_instance_id
from taskflow.runtime.readiness import DatabaseConnector, Readiness
from taskflow.runtime.shutdown import finish_running_tasks

logger = logging.getLogger("taskflow")

# How long startup waits for a first connection attempt that neither succeeds
# nor fails (a server that accepts and does not answer) before it goes on
# without it.  Longer than a connect timeout, so that an unreachable server is
# judged by its error.
STARTUP_CONNECT_WAIT_S = 30.0
# How long a start's first query may wait for an answer: longer than the
# drivers' connect timeout (10 s), so that their own errors come first.
OPEN_TIMEOUT_S = 15.0
_SHUTTING_DOWN = "the TaskManager is shutting down and accepts no new tasks"


def _never_transient(_exc: BaseException) -> bool:
    return False


class LifecycleMethods(ManagerParts):
    """The manager's start, stop and readiness, and what runs along with it."""

    @property
    def started(self) -> bool:
        """Whether ``startup()`` has completed and ``shutdown()`` has not run since."""
        return self._started

    async def startup(self) -> None:
        """Start the writer, dispatcher and services, connecting first (schema where configured).

        A PostgreSQL or MySQL database that cannot be reached does not fail
        the start: the instance starts, ``readiness()`` says why it is not
        ready, and it connects in the background as soon as the database
        answers.  Until then a request that adds a task waits up to
        ``acknowledge_timeout`` and gets 503.  Errors that waiting cannot cure
        (a schema from a newer taskflow) still fail the start, as does any
        error on SQLite.
        """
        if self._started:
            return
        # A fresh identity per start: a restarted manager is a new instance to
        # the others, and rows of its previous life are recovered like any.
        self.instance_id = new_instance_id()
        self._loop = asyncio.get_running_loop()
        if self.logger is not None:
            await self.logger.startup()
        self.runtime = assemble_runtime(
            self.runtime_settings(),
            repository=self.repository,
            registry=self.registry,
            tasks=self.local_tasks,
            instance_id=self.instance_id,
            cipher=self.fernet,
            changes=self.changes,
            events=self.logger,
            tracer_provider=self.tracer_provider,
        )
        self.changes.open()
        self._stopping = False
        self._started = True
        self.submission.open(self.instance_id, cipher=self.fernet, lease_seconds=self.lease_seconds)
        # A local file: an error opening it is a configuration error.
        tolerant = not self.repository.is_local
        self._connector = DatabaseConnector(
            self._reach_database,
            self._go_live,
            is_transient=self.repository.is_transient if tolerant else _never_transient,
        )
        try:
            await self._connector.start(wait=STARTUP_CONNECT_WAIT_S)
        except BaseException:
            await self._abandon_start()
            raise
        if not self._connector.connected:
            self.runtime.writer.set_unreachable(True)
        for start_hook, _stop_hook in self._lifecycle_hooks:
            start_hook()
        if self.freeze_gc_at_startup:
            freeze_startup_heap()

    async def _reach_database(self) -> None:
        """Everything startup needs of the database; safe to run again after a failure."""
        try:
            # Bounded: a server that accepts the connection and never answers
            # would hang the attempt for good (MySQL's handshake has no timeout).
            await asyncio.wait_for(self.repository.open(), OPEN_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise TimeoutError(f"the database did not answer within {OPEN_TIMEOUT_S:g}s") from None
        problem = await self.repository.prepare_schema(migrate=self.create_tables)
        if problem is not None:
            logger.warning("taskflow: %s", problem)
        assert self.runtime is not None
        await self.runtime.begin()

    async def _go_live(self) -> None:
        """What runs once the database is reached: change notices and services."""
        self._remote_changes = RemoteChanges(self.repository, self.instance_id, self.changes)
        await self._remote_changes.start()
        for service in self._services:
            await service.start()

    async def _abandon_start(self) -> None:
        """Undo a start that failed: nothing of it may keep running."""
        self._started = False
        self.submission.close()
        if await self._stop_connecting() and self.runtime is not None:
            with contextlib.suppress(Exception):
                await self.runtime.dispatcher.stop()
        if self.runtime is not None:
            await self.runtime.writer.stop()
            await self.runtime.close_executors()
        if self.logger is not None:
            await self.logger.close()
        # shutdown() does nothing for a manager that never started: the
        # connections opened to check the schema are given back here.
        with contextlib.suppress(Exception):
            await self.repository.close()

    def readiness(self) -> Readiness:
        """Whether this instance can take tasks now, and if not, why (for a readiness probe).

        Not ready: before ``startup()`` and from ``shutdown()`` on; until the
        database is first reached; while heartbeats, claims or writes fail.
        """
        if not self._started:
            return Readiness(False, "taskflow is not started")
        if self._stopping:
            return Readiness(False, "taskflow is shutting down")
        problem = self.database_problem()
        return Readiness(problem is None, problem)

    def database_problem(self) -> str | None:
        """Why the database cannot be counted on now (not yet reached, failing), or None."""
        connector = self._connector
        if connector is not None and not connector.connected:
            return connector.reason or "connecting to the database"
        return None if self.runtime is None else self.runtime.database_problem()

    async def shutdown(self) -> None:
        """Stop claiming, run what was accepted (``shutdown_grace``), record the rest.

        Like FastAPI's own background tasks, the tasks of the last requests
        still run.  Tasks still running after the grace period become
        ``interrupted`` (or go back to ``pending`` for any instance when their
        function has ``requeue_on_interrupt=True``); tasks not started by
        then, and retries not yet due, are released so another instance, or
        the next start, runs them.
        """
        if not self._started:
            return
        runtime = self.runtime
        assert runtime is not None
        self._stopping = True
        self.submission.close(_SHUTTING_DOWN)
        connected = await self._stop_connecting()
        self.changes.close()  # end live streams first: they hold connections open
        if self._remote_changes is not None:
            with contextlib.suppress(Exception):  # only a notice channel
                await self._remote_changes.stop()
            self._remote_changes = None
        if connected:  # else no service was started
            await self._stop_services()
        await runtime.dispatcher.stop_claiming()  # heartbeats go on through the grace
        runtime.writer.stop_napping()
        await finish_running_tasks(
            self.local_tasks.held,
            self.local_tasks.background,
            # Never connected: nothing started (a start waits for its commit), nothing will.
            shutdown_grace=self.shutdown_grace if connected else 0.0,
            process_shutdown_timeout=self.process_shutdown_timeout,
            stop_starting=self.local_tasks.stop_starting,
        )
        if connected:
            await runtime.dispatcher.stop()
        if self.local_tasks.alarm is not None:
            self.local_tasks.alarm.cancel()
        await runtime.release_and_stop_writer(
            self.local_tasks, self.repository, connected=connected
        )
        await runtime.close_executors()
        if self.logger is not None:
            await self.logger.close()
        await asyncio.to_thread(self._bridge.close)
        await self.repository.close()
        for _start_hook, stop_hook in reversed(self._lifecycle_hooks):
            stop_hook()
        self.submission.close()
        self._started = False

    async def _stop_connecting(self) -> bool:
        """Stop trying to reach the database; returns whether it was reached."""
        connector = self._connector
        if connector is None:
            return True
        await connector.stop()
        return connector.connected

    async def _stop_services(self) -> None:
        for service in reversed(self._services):
            try:
                await service.stop()
            except Exception:  # one failing service must not skip the rest of shutdown
                logger.exception("taskflow service %r failed to stop", service)

    def add_service(self, service: Service) -> None:
        """Run ``service.start()`` after every startup and ``service.stop()`` first at shutdown.

        For parts that live as long as the manager runs (the scheduler).  A
        service added while the manager runs is started by the next startup.
        """
        self._services.append(service)

    def add_lifecycle_hooks(self, start: Callable[[], None], stop: Callable[[], None]) -> None:
        """Call ``start`` at every startup (now too, if started) and ``stop`` at every shutdown."""
        self._lifecycle_hooks.append((start, stop))
        if self._started:
            start()

    async def drain(self) -> None:
        """Wait until every local task has finished and its final state is committed.

        Tasks added through a ``ManagedBackgroundTasks`` that nothing will run
        (made outside a request, in an app without ``init_app()``) are
        started first, so this returns for them too.
        """
        await self.local_tasks.drain()
        await self.flush()
