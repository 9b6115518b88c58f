"""The FastAPI glue: the dependency, ``install()``, ``init_app()``, and the request hold.

Implemented in ``taskflow.web``, which is imported only when an app uses
it, so that the manager itself does not need FastAPI's routing at import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from taskflow.facade.parts import ManagerParts
from taskflow.runtime.acknowledgement import Receipt, Refusal, settle_request, wait_committed

if TYPE_CHECKING:
    from fastapi import APIRouter, BackgroundTasks, FastAPI

    from taskflow.manager import TaskManager
    from taskflow.web.background import ManagedBackgroundTasks


class FastAPIMethods(ManagerParts):
    """How routes get managed background tasks, and how responses wait for their rows."""

    @property
    def get_tasks(self) -> Callable[[BackgroundTasks], ManagedBackgroundTasks]:
        """FastAPI dependency: a ``ManagedBackgroundTasks`` sharing the request's task list.

        Use as ``tasks = Depends(task_manager.get_tasks)``; no ``install()`` needed.
        """
        if self._dependency is None:
            from taskflow.web.install import make_dependency

            self._dependency = make_dependency(self._as_manager())
        return self._dependency

    @property
    def background_tasks(self) -> Callable[[BackgroundTasks], ManagedBackgroundTasks]:
        """Alias of ``get_tasks`` that reads well in ``Depends(task_manager.background_tasks)``."""
        return self.get_tasks

    def install(self, app: FastAPI | None = None) -> None:
        """Make plain ``BackgroundTasks`` annotations receive ``ManagedBackgroundTasks``."""
        from taskflow.web.install import install

        install(self._as_manager(), app)

    def readiness_router(self, path: str = "/ready") -> APIRouter:
        """A router for ``GET {path}``: 200 when ``readiness()`` says ready, else 503 and why.

        Use as ``app.include_router(task_manager.readiness_router())``.
        """
        from taskflow.web.readiness import create_readiness_router

        return create_readiness_router(self._as_manager(), path)

    def init_app(self, app: FastAPI) -> None:
        """Run ``startup()``/``shutdown()`` with the app's lifespan; safe to call twice.

        Also holds each of the app's responses until the tasks its request
        added are committed (``acknowledge="committed"``), and answers 503
        when the database cannot confirm them in time.
        """
        from taskflow.web.install import add_acknowledgement, add_error_handlers, wrap_lifespan

        if id(app) in self._apps:
            return
        self._apps.add(id(app))
        wrap_lifespan(self._as_manager(), app)
        add_error_handlers(app)
        add_acknowledgement(self._as_manager(), app)

    def inject_into(self, app: FastAPI) -> None:
        """Give ``app``'s plain ``BackgroundTasks`` annotations this manager (see ``install``)."""
        self._inject_apps.add(id(app))

    def injects_into(self, app: Any) -> bool:
        """Whether ``install(app)`` made ``app``'s plain ``BackgroundTasks`` managed."""
        return id(app) in self._inject_apps

    @property
    def serves_requests(self) -> bool:
        """Whether some app's requests pass this manager's hold (``init_app()`` ran)."""
        return bool(self._apps)

    # -- acknowledgement (logic in taskflow.runtime.acknowledgement) ------------

    async def acknowledge(self, receipt: Receipt) -> Refusal | None:
        """Wait until the receipt's new tasks are committed; None, or why they are not."""
        tasks = receipt.tasks[receipt.acknowledged :]
        receipt.acknowledged = len(receipt.tasks)
        if self.acknowledge_mode == "buffered" or self.runtime is None:
            return None
        return await wait_committed(
            tasks, self.runtime.writer, self.acknowledge_timeout, self.local_tasks.forget
        )

    def settle_request(self, receipt: Receipt, status_code: int | None) -> None:
        """After a request: tasks FastAPI never ran are run (success) or cancelled."""
        settle_request(
            receipt,
            status_code,
            dispatch=self.local_tasks.dispatch,
            forget=self.local_tasks.forget,
            writer=None if self.runtime is None else self.runtime.writer,
        )

    def _as_manager(self) -> TaskManager:
        # The web glue takes the whole manager; these methods only exist on one.
        return cast("TaskManager", self)
