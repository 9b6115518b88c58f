"""Wiring a ``TaskManager`` into a FastAPI app: injection and lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import fastapi.dependencies.utils as fastapi_utils
from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import JSONResponse

from taskflow.exceptions import BackpressureError
from taskflow.web.background import ManagedBackgroundTasks

if TYPE_CHECKING:
    from taskflow.manager import TaskManager

# The name FastAPI calls to build each request's BackgroundTasks.
_FACTORY = "BackgroundTasks"


def install(manager: TaskManager, app: FastAPI | None = None) -> None:
    """Make FastAPI build ``ManagedBackgroundTasks`` wherever it builds ``BackgroundTasks``.

    FastAPI creates the request's ``BackgroundTasks`` through the name imported
    in ``fastapi.dependencies.utils``; pointing that name at a subclass bound
    to this manager covers both ``BackgroundTasks`` and ``ManagedBackgroundTasks``
    annotations.  The patch is process-wide, as in the described system; it
    is undone when the manager shuts down and applied again when it restarts.
    """

    class BoundManagedBackgroundTasks(ManagedBackgroundTasks):
        def __init__(self, tasks: Any = None) -> None:
            super().__init__(manager)
            if tasks:
                self.tasks.extend(tasks)

    previous = getattr(fastapi_utils, _FACTORY)

    def patch() -> None:
        setattr(fastapi_utils, _FACTORY, BoundManagedBackgroundTasks)

    def unpatch() -> None:
        # Only undo our own patch: a later install() by another manager stays.
        if getattr(fastapi_utils, _FACTORY) is BoundManagedBackgroundTasks:
            setattr(fastapi_utils, _FACTORY, previous)

    patch()
    manager.add_lifecycle_hooks(patch, unpatch)
    if app is not None:
        manager.init_app(app)


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
    # The database has been unreachable long enough to fill the write buffer:
    # the task was not accepted, and the client may try again shortly.
    return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})


def add_error_handlers(app: FastAPI) -> None:
    """Answer 503 (with Retry-After) when a task cannot be accepted for now."""
    app.add_exception_handler(BackpressureError, _busy)


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
