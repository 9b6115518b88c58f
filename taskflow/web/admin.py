"""``TaskAdmin``: mounts the task API on an app and wires the manager's lifecycle."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from taskflow.exceptions import ConfigurationError
from taskflow.web.access import AdminAccess, OpenAccess
from taskflow.web.routes import create_router
from taskflow.web.schedule_routes import create_schedule_router

if TYPE_CHECKING:
    from taskflow.manager import TaskManager


class TaskAdmin:
    """Mount the task management routes under ``path`` and start the manager with the app.

    Args:
        auto_install: also make plain ``BackgroundTasks`` annotations managed.
        retention_days: overrides the manager's ``retention_days``.
    """

    def __init__(
        self,
        app: FastAPI,
        task_manager: TaskManager,
        *,
        path: str = "/tasks",
        display_func_args: bool = False,
        auto_install: bool = False,
        auth: Any = None,
        token_expiry: int = 86400,
        secret_key: str | None = None,
        poll_interval: float = 30.0,
        title: str = "taskflow",
        retention_days: float | None = None,
    ) -> None:
        if not path.startswith("/") or path.endswith("/"):
            raise ConfigurationError(f"path must start with '/' and not end with one, got {path!r}")
        if auth is not None:
            raise ConfigurationError(
                "TaskAdmin(auth=...) is not available in this release: the admin routes would "
                "be served without the protection you asked for. Mount TaskAdmin behind your "
                "own authentication (e.g. a router dependency) until it lands"
            )
        self.app = app
        self.task_manager = task_manager
        self.path = path
        self.display_func_args = display_func_args
        self.token_expiry = token_expiry
        self.secret_key = secret_key
        self.poll_interval = poll_interval
        self.title = title
        if retention_days is not None:
            task_manager.set_retention(retention_days)
        self.access: AdminAccess = OpenAccess()
        # Schedules first: the task router's {path}/{task_id} would match "schedules".
        app.include_router(create_schedule_router(task_manager, path=path, access=self.access))
        app.include_router(create_router(task_manager, path=path, access=self.access))
        if auto_install:
            task_manager.install(app)
        task_manager.init_app(app)
