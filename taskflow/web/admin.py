"""``TaskAdmin``: mounts the task API on an app and wires the manager's lifecycle."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, params

from taskflow.exceptions import ConfigurationError
from taskflow.web.access import AdminAccess, OpenAccess
from taskflow.web.auth import AuthConfig, resolve_auth
from taskflow.web.dashboard import create_dashboard_router
from taskflow.web.login_routes import create_login_router, create_session_router
from taskflow.web.prefixed_router import AdminRoutes
from taskflow.web.routes import create_router
from taskflow.web.schedule_routes import create_schedule_router
from taskflow.web.session_access import DependencyAccess, SessionAccess
from taskflow.web.sessions import MIN_SECRET_KEY, SessionStore
from taskflow.web.stream import create_stream_router

if TYPE_CHECKING:
    from taskflow.manager import TaskManager

logger = logging.getLogger("taskflow")

DEFAULT_TOKEN_EXPIRY = 8 * 60 * 60


class TaskAdmin:
    """Mount the task management routes under ``path`` and start the manager with the app.

    Args:
        auto_install: also make plain ``BackgroundTasks`` annotations managed.
        retention_days: overrides the manager's ``retention_days``.
        auth: who may use the admin: ``(user, password)``, ``(user, password, "viewer")``,
            a list of those, a ``TaskAuthBackend``, or a FastAPI dependency of the app's
            own (``Depends(current_user)``, returning a user name).  None: no login, and
            a warning at each start; ``False``: no login on purpose (a private network,
            or ``dependencies=`` doing the guarding), without the warning.
        token_expiry: seconds a login lasts (8 hours by default).
        secret_key: at least 32 characters; keys the digests of session tokens.  Not
            needed for several instances: sessions live in the database.
        poll_interval: seconds between the live dashboard's re-reads of its page, which
            is how it sees other instances' changes (this instance's show at once).
        title: the dashboard's title.
        display_func_args: show tasks' arguments (as ``repr``) in the dashboard.
        include_in_schema: list the admin routes in the app's OpenAPI schema (``/docs``).
        dependencies: FastAPI dependencies run before every admin route (the
            dashboard, its login and the JSON API), as for ``app.include_router``:
            e.g. ``[Depends(require_staff)]`` to guard them with the app's own checks.
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
        token_expiry: int = DEFAULT_TOKEN_EXPIRY,
        secret_key: str | None = None,
        poll_interval: float = 2.0,
        title: str = "taskflow",
        retention_days: float | None = None,
        include_in_schema: bool = True,
        dependencies: Sequence[params.Depends] | None = None,
    ) -> None:
        if not path.startswith("/") or path.endswith("/"):
            raise ConfigurationError(f"path must start with '/' and not end with one, got {path!r}")
        _check_settings(token_expiry, secret_key)
        config = resolve_auth(None if auth is False else auth)
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
        self.auth_mode = "open" if config is None else "session" if config.backend else "dependency"
        self._routes = AdminRoutes(path)
        self.access: AdminAccess = self._include_auth(config)
        self._include_dashboard()
        # Schedules first: the task router's {path}/{task_id} would match "schedules".
        self._routes.include_router(
            create_schedule_router(task_manager, path=path, access=self.access)
        )
        self._routes.include_router(create_router(task_manager, path=path, access=self.access))
        self.include_in_schema = include_in_schema
        self.dependencies = list(dependencies or [])
        app.include_router(
            self._routes, include_in_schema=include_in_schema, dependencies=self.dependencies
        )
        if auth is None and not self.dependencies:
            task_manager.add_lifecycle_hooks(self._warn_open, _nothing)
        if auto_install:
            task_manager.install(app)
        task_manager.init_app(app)

    @property
    def router(self) -> APIRouter:
        """The ``APIRouter`` holding every admin route (already included in the app)."""
        return self._routes

    def _warn_open(self) -> None:
        """At each start: the admin answers anyone, including its state-changing routes."""
        logger.warning(
            "taskflow: TaskAdmin at %s has no auth, so anyone who can reach this app can read "
            "every task and call DELETE %s/history and POST %s/retry-failed. Pass "
            "auth=(user, password) (or a TaskAuthBackend, or Depends(current_user)) or "
            "dependencies=[Depends(...)]; auth=False keeps it open on purpose, without "
            "this warning.",
            self.path,
            self.path,
            self.path,
        )

    def _include_auth(self, config: AuthConfig | None) -> AdminAccess:
        """Build the one access policy every admin route uses, and mount ``{path}/auth``."""
        access: AdminAccess
        if config is None:
            access = OpenAccess()
        elif config.dependency is not None:
            access = DependencyAccess(config.dependency)
        else:
            assert config.backend is not None
            store = SessionStore(
                self.task_manager.repository,
                lifetime=timedelta(seconds=self.token_expiry),
                secret_key=self.secret_key,
            )
            access = SessionAccess(store, path=self.path, still_granted=config.still_granted)
            self._routes.include_router(
                create_login_router(
                    self.task_manager, access=access, backend=config.backend, title=self.title
                )
            )
        self._routes.include_router(create_session_router(self.path, access, mode=self.auth_mode))
        return access

    def _include_dashboard(self) -> None:
        # Before the task router, whose {path}/{task_id} would match "dashboard".
        manager, path, access = self.task_manager, self.path, self.access
        self._routes.include_router(
            create_dashboard_router(
                manager,
                path=path,
                access=access,
                title=self.title,
                display_func_args=self.display_func_args,
            )
        )
        self._routes.include_router(
            create_stream_router(
                manager,
                path=path,
                access=access,
                poll_interval=self.poll_interval,
                display_func_args=self.display_func_args,
            )
        )


def _nothing() -> None:
    pass


def _check_settings(token_expiry: int, secret_key: str | None) -> None:
    if isinstance(token_expiry, bool) or not isinstance(token_expiry, int) or token_expiry <= 0:
        raise ConfigurationError(
            f"token_expiry is a positive number of seconds, got {token_expiry!r}"
        )
    if secret_key is not None and (
        not isinstance(secret_key, str) or len(secret_key) < MIN_SECRET_KEY
    ):
        raise ConfigurationError(
            f"secret_key must be a string of at least {MIN_SECRET_KEY} characters; make one with "
            'python -c "import secrets; print(secrets.token_urlsafe(32))"'
        )
