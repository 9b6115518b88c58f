"""Registering task functions and schedules: ``@task_manager.task()`` and ``.schedule()``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from taskflow.deprecations import warn_unneeded
from taskflow.facade.parts import ManagerParts
from taskflow.models import ExceptionTypes, ExecutorName, JitterName, TaskConfig
from taskflow.runtime.scheduler import PeriodicScheduler
from taskflow.schedules import CatchUp, ScheduledEntry, ScheduleState, check_catch_up, make_trigger

F = TypeVar("F", bound=Callable[..., Any])


class RegistrationMethods(ManagerParts):
    """Task functions and schedules, and the schedules' pause switch."""

    def task(
        self,
        *,
        retries: int = 0,
        delay: float = 0.0,
        backoff: float = 1.0,
        persist: bool | None = None,
        name: str | None = None,
        requeue_on_interrupt: bool = False,
        eager: bool = False,
        priority: int | None = None,
        executor: ExecutorName | None = None,
        timeout: float | None = None,
        max_delay: float | None = None,
        jitter: JitterName | None = None,
        retry_on: ExceptionTypes | None = None,
        dont_retry_on: ExceptionTypes | None = None,
    ) -> Callable[[F], F]:
        """Register a function as a managed task; it is returned unchanged.

        Retry ``n + 1`` waits ``delay * backoff ** n`` seconds, at most ``max_delay``,
        spread by ``jitter`` (``"full"``/``"equal"``); ``retry_on`` (default: every
        exception) and ``dont_retry_on`` (which wins) choose the errors retried.

        Raises:
            RegistrationError: invalid values, an executor that does not fit the
                function, or a name already used by another function.

        ``persist`` (fastapi-taskflow's) has no effect, every task is stored;
        giving it warns (``DeprecationWarning``).
        """
        warn_unneeded({"persist": persist}, stacklevel=2)
        config = TaskConfig(
            retries=retries,
            delay=delay,
            backoff=backoff,
            persist=bool(persist),
            name=name,
            requeue_on_interrupt=requeue_on_interrupt,
            eager=eager,
            priority=priority,
            executor=executor,
            timeout=timeout,
            max_delay=max_delay,
            jitter=jitter,
            retry_on=retry_on,
            dont_retry_on=dont_retry_on,
        )

        def decorator(func: F) -> F:
            self.registry.register(func, config)
            return func

        return decorator

    def schedule(
        self,
        *,
        every: float | timedelta | None = None,
        cron: str | None = None,
        retries: int = 0,
        delay: float = 0.0,
        backoff: float = 1.0,
        name: str | None = None,
        run_on_startup: bool = False,
        timezone: str = "UTC",
        executor: ExecutorName | None = None,
        catch_up: CatchUp = "once",
        max_delay: float | None = None,
        jitter: JitterName | None = None,
        retry_on: ExceptionTypes | None = None,
        dont_retry_on: ExceptionTypes | None = None,
    ) -> Callable[[F], F]:
        """Register a function that runs every ``every`` seconds or on a ``cron`` expression.

        Each slot fires exactly once, however many instances share the
        database; the function is also a normal task that ``add_task()`` can
        enqueue by hand.  After downtime a missed schedule fires once
        (``catch_up="all"``: once per missed slot).  ``cron`` is read in
        ``timezone`` and needs ``pip install "taskflow-sql[scheduler]"``.  Each
        firing retries as ``@task_manager.task()`` says for the same options.

        Raises:
            RegistrationError: not exactly one of ``every`` / ``cron``, ``every <= 0``,
                a malformed cron expression, an unknown timezone, or invalid task settings.
            MissingDependencyError: ``cron`` without croniter installed.
        """
        trigger = make_trigger(every=every, cron=cron, timezone=timezone)
        policy = check_catch_up(catch_up)
        config = TaskConfig(
            retries=retries,
            delay=delay,
            backoff=backoff,
            name=name,
            executor=executor,
            max_delay=max_delay,
            jitter=jitter,
            retry_on=retry_on,
            dont_retry_on=dont_retry_on,
        )

        def decorator(func: F) -> F:
            target = self.registry.register(func, config)
            entry = ScheduledEntry(target, trigger, bool(run_on_startup), policy)
            self._periodic().add(entry)
            return func

        return decorator

    async def list_schedules(self) -> list[ScheduleState]:
        """Every schedule in the database (any instance's), with next run, last run and paused."""
        return await self.repository.list_schedules()

    async def pause_schedule(self, name: str) -> ScheduleState:
        """Stop firing schedule ``name`` on every instance until ``resume_schedule(name)``.

        Raises:
            ScheduleNotFoundError: no schedule has that name.
        """
        return await self._periodic().set_paused(name, True)

    async def resume_schedule(self, name: str) -> ScheduleState:
        """Fire schedule ``name`` again, from its next slot after now (missed runs are skipped).

        Raises:
            ScheduleNotFoundError: no schedule has that name.
        """
        return await self._periodic().set_paused(name, False)

    @property
    def scheduler(self) -> PeriodicScheduler | None:
        """What fires this process's schedules; None until a schedule is registered."""
        return self._scheduler

    def _periodic(self) -> PeriodicScheduler:
        scheduler = self._scheduler
        if scheduler is None:
            scheduler = self._scheduler = PeriodicScheduler(
                self.repository, cipher=self.fernet, on_fired=self.wake
            )
            self._services.append(scheduler)
            loop = self._loop
            if self._started and loop is not None and not loop.is_closed():
                # Added while running: start it now rather than at the next startup.
                loop.call_soon_threadsafe(lambda: self.spawn(scheduler.start()))
        return scheduler
