"""``ManagedBackgroundTasks``: FastAPI's ``BackgroundTasks`` whose tasks are durable rows."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec

from fastapi import BackgroundTasks
from starlette.background import BackgroundTask

from taskflow.models import utcnow
from taskflow.runtime.acknowledgement import current_receipt
from taskflow.runtime.priority import dispatch_path
from taskflow.runtime.timing import due_time, take_time_options

if TYPE_CHECKING:
    from taskflow.manager import TaskManager
    from taskflow.runtime.runner import LocalTask

P = ParamSpec("P")

# fastapi-taskflow's options, given among the task's own keyword arguments.
ADD_TASK_OPTIONS = ("idempotency_key", "tags", "eager", "priority")


@dataclass(frozen=True)
class AddTaskOptions:
    """How one ``add_task()`` call is stored and dispatched (see ``with_options``)."""

    idempotency_key: str | None = None
    tags: dict[str, Any] | None = None
    eager: bool | None = None
    priority: int | None = None
    run_at: datetime | None = None
    delay: float | timedelta | None = None


class ManagedBackgroundTasks(BackgroundTasks):
    """A ``fastapi.BackgroundTasks`` whose ``add_task`` persists the task and returns its id.

    When built from the request's own ``BackgroundTasks`` it shares its task
    list, so plain and managed tasks of one request run in the order added,
    after the response, exactly as FastAPI runs them.
    """

    def __init__(
        self,
        task_manager: TaskManager,
        background_tasks: BackgroundTasks | None = None,
    ) -> None:
        super().__init__()
        self.task_manager = task_manager
        if background_tasks is not None:
            self.tasks = background_tasks.tasks
        self._previous: LocalTask | None = None

    # Starlette's add_task returns None; returning the id instead is the point
    # of this class, and no caller of the base method reads its result.
    def add_task(  # type: ignore[override]
        self, func: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs
    ) -> str:
        """Persist a call of ``func`` and schedule it; returns the task id.

        The arguments are checked against ``func``'s signature by type
        checkers.  fastapi-taskflow's options (``idempotency_key=``, ``tags=``,
        ``eager=``, ``priority=``) and ``run_at=`` / ``delay=`` are still taken
        from the keyword arguments at run time; typed code passes them
        through ``with_options()``.

        ``run_at=`` (an aware datetime) or ``delay=`` (seconds) makes a task
        for later: its row is written now, ``pending`` with that ``run_at``,
        and whichever instance finds it due runs it (not necessarily this
        one); a time in the past runs at once.  A task function with a
        parameter of its own called ``run_at`` or ``delay`` receives it:
        pass the option through ``with_options()`` then.

        The request's response is sent only once the task's row is committed
        (``acknowledge="committed"``).  It runs after the response, in the
        order added, unless it has a ``priority`` (it then waits in the
        priority queue at once, and ``eager`` is ignored) or ``eager=True``
        (it starts at once, while the handler is still running; not for
        process tasks, which warn and run after the response).

        Raises:
            TaskArgumentError: the arguments cannot be stored, or ``run_at`` /
                ``delay`` are not a usable time.
            BackpressureError: the database has been unreachable long enough
                to fill the write buffer.
        """
        options: dict[str, Any] = {
            name: kwargs.pop(name) for name in ADD_TASK_OPTIONS if name in kwargs
        }
        options.update(take_time_options(func, kwargs))
        return self._submit(func, args, kwargs, AddTaskOptions(**options))

    def with_options(
        self,
        *,
        idempotency_key: str | None = None,
        tags: dict[str, Any] | None = None,
        eager: bool | None = None,
        priority: int | None = None,
        run_at: datetime | None = None,
        delay: float | timedelta | None = None,
    ) -> BackgroundTasksWithOptions:
        """``add_task()`` with options, kept apart from the task's own arguments.

        ``background_tasks.with_options(priority=5).add_task(send_email, address=a)``:
        the type checker then checks ``send_email``'s arguments, and a task
        function may itself take a parameter named ``tags`` or ``priority``.
        """
        options = AddTaskOptions(idempotency_key, tags, eager, priority, run_at, delay)
        return BackgroundTasksWithOptions(self, options)

    def _submit(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: AddTaskOptions,
    ) -> str:
        # The work of add_task(), with the task's arguments and options apart.
        manager = self.task_manager
        local = manager.submission.submit(
            func,
            args,
            kwargs,
            idempotency_key=options.idempotency_key,
            tags=options.tags,
            priority=options.priority,
            run_at=due_time(options.run_at, options.delay, utcnow()),
        )
        if isinstance(local, str):
            return local  # the idempotency key belongs to a live task: nothing enqueued
        receipt = current_receipt.get()
        if local.deferred:
            # Not in FastAPI's list: it runs when due, on whichever instance.
            if receipt is not None and receipt.takes(manager):
                receipt.tasks.append(local)  # acknowledged, then left to the claims
            else:
                manager.local_tasks.dispatch(local, hurry=True)
            return local.record.task_id
        run_eagerly = local.target.config.eager if options.eager is None else options.eager
        path = dispatch_path(local.record.priority, run_eagerly, local.target.executor)
        if run_eagerly and path == "after_response" and local.record.priority is None:
            warnings.warn(
                f"eager=True is not supported with executor='process' ({local.record.func_name}):"
                " the task runs after the response instead",
                RuntimeWarning,
                stacklevel=3,
            )
        if receipt is not None and receipt.takes(manager):
            receipt.tasks.append(local)  # the response waits for its row
        elif path == "after_response" and manager.serves_requests:
            path = "now"  # outside any request: nothing would ever run the list
        if path == "now":
            manager.local_tasks.dispatch(local, hurry=True)
        else:
            self.tasks.append(_RunAfterResponse(manager, local, self._previous, self.tasks))
            self._previous = local
        return local.record.task_id


class BackgroundTasksWithOptions:
    """What ``ManagedBackgroundTasks.with_options()`` returns: its ``add_task``, with options."""

    def __init__(self, tasks: ManagedBackgroundTasks, options: AddTaskOptions) -> None:
        self._tasks = tasks
        self._options = options

    def add_task(self, func: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> str:
        """Persist a call of ``func`` with these options; returns the task id.

        Every keyword argument goes to ``func``, whatever its name.
        """
        return self._tasks._submit(func, args, dict(kwargs), self._options)


class _RunAfterResponse(BackgroundTask):
    """What FastAPI calls after the response: hand the durable task to the manager.

    Looks like a ``BackgroundTask`` of the user's function (FastAPI's
    telemetry reads ``func``), but skips its per-call introspection.
    """

    def __init__(
        self,
        manager: TaskManager,
        local: LocalTask,
        after: LocalTask | None,
        siblings: list[BackgroundTask],
    ) -> None:
        self.func = local.target.func
        self.args = ()  # type: ignore[assignment]  # nothing to pass: __call__ is ours
        self.kwargs = {}  # type: ignore[assignment]
        self.is_async = True
        self.manager = manager
        self.local = local
        self.after = after
        self.siblings = siblings

    async def __call__(self) -> None:
        plain_task_follows = self._plain_task_follows()
        # The request's task list holds this object: let go of it, so that both
        # are freed when FastAPI drops the list, not by a garbage collection.
        self.siblings = []
        await self.manager.local_tasks.hand_off(self.local, self.after)
        if plain_task_follows:
            # FastAPI runs the list in order: a plain task added after this one
            # must not start before this one's first attempt is over.
            await self.local.wait_settled()

    def _plain_task_follows(self) -> bool:
        if self.siblings[-1] is self:
            return False  # the usual case: the request's last (or only) task
        later = self.siblings[self.siblings.index(self) + 1 :]
        return any(not isinstance(task, _RunAfterResponse) for task in later)
