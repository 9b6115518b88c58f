"""Wiring a ``TaskManager`` into a FastAPI app: injection and lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import fastapi.dependencies.utils as fastapi_utils
from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTasks as StarletteBackgroundTasks

from taskflow.exceptions import (
    BackpressureError,
    CommitTimeoutError,
    DatabaseUnavailableError,
    WriterStoppedError,
)
from taskflow.runtime.acknowledgement import current_receipt
from taskflow.web.acknowledge import AcknowledgeMiddleware
from taskflow.web.background import ManagedBackgroundTasks

if TYPE_CHECKING:
    from taskflow.manager import TaskManager

logger = logging.getLogger("taskflow")

# The name FastAPI calls to build each request's BackgroundTasks.
_FACTORY = "BackgroundTasks"


def install(manager: TaskManager, app: FastAPI | None = None) -> None:
    """Make plain ``BackgroundTasks`` annotations receive ``ManagedBackgroundTasks``.

    FastAPI creates the request's ``BackgroundTasks`` through the name
    imported in ``fastapi.dependencies.utils``; that name is pointed, once and
    for good, at a factory that asks which manager the current request
    belongs to.  With ``app``, that app's requests get ``manager`` (the hold
    set up by ``init_app()`` tells the factory), whether or not the manager
    is started: a test client used without ``with`` then fails loudly at
    ``add_task()`` rather than running plain, non-durable tasks.  While it
    runs, ``manager`` is also the process-wide default for apps that have
    none, as in fastapi-taskflow; apps with no manager get FastAPI's own
    class once it has stopped.
    """
    _patch_factory()

    def set_default() -> None:
        global _default_manager
        _default_manager = manager

    def clear_default() -> None:
        global _default_manager
        if _default_manager is manager:
            _default_manager = None

    manager.add_lifecycle_hooks(set_default, clear_default)
    if app is not None:
        manager.inject_into(app)
        manager.init_app(app)


_default_manager: TaskManager | None = None


def request_background_tasks(tasks: Any = None) -> StarletteBackgroundTasks:
    """What FastAPI calls to build a request's ``BackgroundTasks`` once ``install()`` ran."""
    receipt = current_receipt.get()
    manager = receipt.manager if receipt is not None and receipt.inject else _default_manager
    if manager is None:
        return BackgroundTasks(tasks)
    managed = ManagedBackgroundTasks(manager)
    if tasks:
        managed.tasks.extend(tasks)
    return managed


def _patch_factory() -> None:
    if getattr(fastapi_utils, _FACTORY) is not request_background_tasks:
        setattr(fastapi_utils, _FACTORY, request_background_tasks)


def make_dependency(
    manager: TaskManager,
) -> Callable[[BackgroundTasks], ManagedBackgroundTasks]:
    """The function behind ``Depends(task_manager.get_tasks)``.

    Defined here, where ``BackgroundTasks`` is a runtime name, so FastAPI can
    read the annotation and inject the request's own ``BackgroundTasks``.
    """

    def get_tasks(background_tasks: BackgroundTasks) -> ManagedBackgroundTasks:
        return ManagedBackgroundTasks(manager, background_tasks)

    return get_tasks


async def _busy(_request: Request, exc: Exception) -> JSONResponse:
    # The database has been unreachable long enough to fill the write buffer,
    # or did not confirm an awaited enqueue() in time, or cannot be reached for a
    # keyed task's insert, or taskflow is stopping:
    # the task was not created, and the client may try again shortly.
    return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})


def add_error_handlers(app: FastAPI) -> None:
    """Answer 503 (with Retry-After) when a task cannot be accepted for now."""
    for error in (
        BackpressureError,
        CommitTimeoutError,
        DatabaseUnavailableError,
        WriterStoppedError,
    ):
        app.add_exception_handler(error, _busy)


def add_acknowledgement(manager: TaskManager, app: FastAPI) -> None:
    """Hold the app's responses until the tasks their requests added are committed."""
    try:
        app.add_middleware(AcknowledgeMiddleware, manager=manager)
    except RuntimeError as exc:  # Starlette: no middleware once the app has started
        logger.warning(
            "taskflow cannot hold this app's responses until their tasks are committed (%s): "
            "call init_app(app) (or TaskAdmin) before the app starts",
            exc,
        )


def wrap_lifespan(manager: TaskManager, app: FastAPI) -> None:
    """Run the manager's startup before, and its shutdown after, the app's own lifespan.

    Wrapping ``router.lifespan_context`` works whether the app uses
    ``lifespan=``, startup events, or nothing at all.
    """
    original = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        await manager.startup()
        try:
            async with original(app_) as state:
                yield state
        finally:
            await manager.shutdown()

    app.router.lifespan_context = lifespan
