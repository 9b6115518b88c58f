"""Helpers for testing an application that uses taskflow: run tasks inline, or capture them.

Two modes, one per kind of test:

- ``inline_tasks(task_manager)``: tasks really run, through the real path
  (row, runner, retries, result), and each request of an app wired with
  ``init_app()`` (or ``TaskAdmin``) returns to the test client only once
  every task is over, the tasks those tasks added included.  A test then
  asserts on the task's effects right after ``client.post(...)``, as it
  would with FastAPI's own ``BackgroundTasks``.
- ``capture(task_manager)``: ``add_task()`` and ``enqueue()`` are checked
  as usual (registered function, storable arguments, a started manager)
  and recorded, but nothing is written and nothing runs.  A test then
  asserts on what would have been enqueued.

Both need the manager started, as in production: use the test client as
a context manager (``with TestClient(app) as client:``) so that the app's
lifespan runs.  A test that forgets gets ``NotStartedError`` saying so, at
every ``add_task()``, in either mode.

``taskflow.pytest_plugin`` turns both into pytest fixtures.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from taskflow.exceptions import ConfigurationError, NotStartedError

if TYPE_CHECKING:
    from taskflow.facade.enqueueing import EnqueueOptions
    from taskflow.manager import TaskManager

__all__ = ["CapturedTask", "CapturedTasks", "capture", "inline_tasks"]


@contextmanager
def inline_tasks(task_manager: TaskManager) -> Iterator[None]:
    """Make each request return only once every task of the manager is over.

    The tasks run as in production (after the response, in the order
    added, with retries and their delays); only the test client's call
    waits for them, through ``task_manager.drain()`` at the end of each
    request.  Outside requests (a script, ``enqueue()`` in a test), await
    ``task_manager.drain()`` or ``task_manager.wait(task_id)`` instead.

    Raises:
        ConfigurationError: no app passes its requests through this manager
            (``init_app(app)`` or ``TaskAdmin`` was not called).
    """
    if not task_manager.serves_requests:
        raise ConfigurationError(
            "inline_tasks() waits for the tasks at the end of each request, and no app "
            "passes its requests through this TaskManager: call task_manager.init_app(app) "
            "(TaskAdmin does it), or await task_manager.drain() in the test instead"
        )
    if task_manager.drain_after_requests:
        raise ConfigurationError("inline_tasks() is already active for this TaskManager")
    task_manager.drain_after_requests = True
    try:
        yield
    finally:
        task_manager.drain_after_requests = False


@dataclass(frozen=True)
class CapturedTask:
    """One ``add_task()`` or ``enqueue()`` call that ``capture()`` recorded instead of running.

    ``options`` holds the options given (``tags``, ``priority``,
    ``idempotency_key``, ...), without those left unset.
    """

    task_id: str
    func_name: str
    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)


class CapturedTasks:
    """The calls recorded by ``capture()``, in the order made."""

    def __init__(self) -> None:
        self.calls: list[CapturedTask] = []

    def __len__(self) -> int:
        return len(self.calls)

    def __iter__(self) -> Iterator[CapturedTask]:
        return iter(self.calls)

    def __getitem__(self, index: int) -> CapturedTask:
        return self.calls[index]

    def of(self, func: Callable[..., Any] | str) -> list[CapturedTask]:
        """The calls of one task function, given as the function or its registered name."""
        if isinstance(func, str):
            return [call for call in self.calls if call.func_name == func]
        return [call for call in self.calls if call.func is func]

    def clear(self) -> None:
        """Forget the calls recorded so far."""
        self.calls.clear()


@contextmanager
def capture(task_manager: TaskManager) -> Iterator[CapturedTasks]:
    """Record ``add_task()`` and ``enqueue()`` calls instead of storing and running them.

    Each call is validated as it would be for real and gets a task id, which
    ``add_task()`` and ``enqueue()`` return; nothing reaches the database.
    Not captured: ``add_to_session()`` and the scheduler's runs.
    """
    submission = task_manager.submission
    if "submit" in vars(submission):
        raise ConfigurationError("capture() is already active for this TaskManager")
    captured = CapturedTasks()

    def record(
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: dict[str, Any],
    ) -> str:
        if submission.refusal is not None:
            raise NotStartedError(submission.refusal)
        target = task_manager.registry.for_function(func)
        # The real record, so that what production refuses is refused here too.
        stored = submission.record_for(
            target,
            args,
            kwargs,
            options.get("idempotency_key"),
            options.get("tags"),
            options.get("priority"),
            owner=None,
        )
        given = {name: value for name, value in options.items() if value is not None}
        call = CapturedTask(stored.task_id, target.name, func, args, dict(kwargs), given)
        captured.calls.append(call)
        return call.task_id

    def submit(
        func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], **options: Any
    ) -> str:
        options.pop("source", None)
        # A string means "no new task to run": the route's add_task() returns it.
        return record(func, args, kwargs, options)

    async def enqueue_with(
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: EnqueueOptions,
    ) -> str:
        return record(func, args, kwargs, _options_of(options))

    # Instance attributes shadow the methods for the duration, and are removed after.
    setattr(submission, "submit", submit)  # noqa: B010
    setattr(task_manager, "_enqueue_with", enqueue_with)  # noqa: B010
    try:
        yield captured
    finally:
        delattr(submission, "submit")
        delattr(task_manager, "_enqueue_with")


def _options_of(options: EnqueueOptions) -> dict[str, Any]:
    return {item.name: getattr(options, item.name) for item in dataclasses.fields(options)}
