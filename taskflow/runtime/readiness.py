"""Reaching the database at startup, in the background when it is away, and saying when ready.

An instance whose database is unreachable when it starts (a server still
booting, a failover, a network not up yet) must not crash-loop: it starts,
answers its other routes, reports "not ready" with the reason, and connects
as soon as the database answers.  Meanwhile a request that adds a task is
answered by the acknowledgement rule (it waits up to ``acknowledge_timeout``,
then 503), because the writer does not run until the database is reached.

The first attempt is made by ``start()`` itself, so a reachable database
gives a started instance as before, and an error that waiting cannot cure
(a newer schema, a bad option) still fails the start.  Attempts are never
cut short: one may be migrating the schema, and a connection that cannot be
made fails on its own within the driver's connect timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

logger = logging.getLogger("taskflow")

Attempt = Callable[[], Awaitable[None]]
TransientCheck = Callable[[BaseException], bool]
RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 5.0
# How long stop() lets an attempt under way finish before cancelling it.
STOP_WAIT_S = 10.0


@dataclass(frozen=True)
class Readiness:
    """Whether this instance can take tasks now; ``reason`` says why not."""

    ready: bool
    reason: str | None = None


def describe_error(exc: BaseException) -> str:
    """The error as one line, with its type (a driver's message alone can be empty)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class DatabaseConnector:
    """Makes ``connect`` succeed once, retrying in the background with backoff.

    ``connect`` is every step startup needs of the database, and must be
    safe to run again after it failed part-way.  ``on_connected`` runs once,
    right after it succeeds.
    """

    def __init__(
        self,
        connect: Attempt,
        on_connected: Attempt,
        *,
        is_transient: TransientCheck,
        retry_initial: float = RETRY_INITIAL_S,
        retry_max: float = RETRY_MAX_S,
    ) -> None:
        self._connect = connect
        self._on_connected = on_connected
        self._is_transient = is_transient
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._task: asyncio.Task[None] | None = None
        self._first_attempt: asyncio.Future[None] | None = None
        self._attempting = False
        # Set once start() has returned without the connection: errors are then logged.
        self._detached = False
        self._began = 0.0
        self._failures = 0
        self._last_error: BaseException | None = None
        self.connected = False

    @property
    def reason(self) -> str | None:
        """Why the database is not reached yet; None once it is."""
        if self.connected:
            return None
        if self._last_error is None:
            return "connecting to the database"
        return f"not connected to the database since startup ({describe_error(self._last_error)})"

    async def start(self, wait: float) -> None:
        """Try now, and keep trying in the background if the database is away.

        Returns once connected, once the first attempt failed for a reason
        that may pass, or after ``wait`` seconds of a first attempt that has
        not ended (it goes on in the background).

        Raises:
            Exception: the first attempt's error when it is not transient, or
                ``on_connected``'s error after a first attempt that succeeded.
        """
        loop = asyncio.get_running_loop()
        self._began = loop.time()
        first = self._first_attempt = loop.create_future()
        task = self._task = loop.create_task(self._keep_trying(), name="taskflow-connect")
        try:
            await asyncio.wait({first, task}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        if not task.done():
            self._detached = True
        elif not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]

    async def stop(self) -> None:
        """Stop trying: at once between attempts, else once the attempt ends (bounded)."""
        task, self._task = self._task, None
        if task is None or task.done():
            return
        if self._attempting:
            await asyncio.wait({task}, timeout=STOP_WAIT_S)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def _keep_trying(self) -> None:
        delay = self._retry_initial
        while True:
            self._attempting = True
            try:
                await self._connect()
                break
            except Exception as exc:
                if not self._detached and not self._is_transient(exc):
                    raise  # within start(): startup fails with it, as it always did
                self._note_failure(exc)
            finally:
                self._attempting = False
            self._release_start()  # startup goes on without the database: not ready
            # Jitter: instances restarted together do not retry in step.
            await asyncio.sleep(delay * random.uniform(0.8, 1.0))
            delay = min(delay * 2, self._retry_max)
        self.connected = True
        self._last_error = None
        if not self._detached:
            await self._on_connected()  # within start(): its error fails the start
            return
        waited = asyncio.get_running_loop().time() - self._began
        logger.warning("taskflow reached the database after %.1fs; ready", waited)
        try:
            await self._on_connected()
        except Exception:
            logger.exception("taskflow reached the database but could not finish starting")

    def _note_failure(self, exc: Exception) -> None:
        previous, self._last_error = self._last_error, exc
        self._failures += 1
        if previous is None:
            # Logged once, not at every retry: drivers word one outage several ways.
            logger.warning(
                "taskflow cannot connect to the database (%s); not ready until it can, and "
                "trying again in the background (requests that add tasks meanwhile wait up "
                "to acknowledge_timeout, then get 503)",
                describe_error(exc),
            )
        elif not self._is_transient(exc) and type(previous) is not type(exc):
            # Reached, but refused for a reason that needs a person (a schema to upgrade).
            logger.error("taskflow cannot start on the database: %s", describe_error(exc))
        else:
            logger.debug("taskflow still cannot connect to the database (%s)", describe_error(exc))

    def _release_start(self) -> None:
        self._detached = True
        first = self._first_attempt
        if first is not None and not first.done():
            first.set_result(None)
