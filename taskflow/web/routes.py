"""The admin JSON API: every route reads the database, so any instance can answer.

Routes with a fixed path (``metrics``, ``audit``, ``bulk-retry``...) are
added before ``{path}/{task_id}``, which would otherwise match them.  Every
state change takes the ``operator`` dependency and is audited with its actor.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from taskflow.exceptions import InvalidTransitionError, TaskNotFoundError
from taskflow.web import inputs
from taskflow.web.access import Actor, AdminAccess, OpenAccess
from taskflow.web.admin_route import AdminRoute
from taskflow.web.prefixed_router import PrefixedRouter
from taskflow.web.retry_routes import create_retry_router
from taskflow.web.schemas import (
    OPERATOR_ERRORS,
    VIEWER_ERRORS,
    CancelOut,
    DeletedOut,
    MetricsOut,
    TaskDetailOut,
    TaskOut,
    error,
)
from taskflow.web.system_routes import create_system_router
from taskflow.web.task_filters import (
    CursorParam,
    FuncNameFilter,
    SearchFilter,
    StatusFilter,
    task_query,
)

if TYPE_CHECKING:
    from taskflow.manager import TaskManager

MAX_PAGE = 500
UNIT_MINUTES = {"min": 1, "hour": 60, "day": 24 * 60}
# History further back than a century is none: a longer window would only
# overflow the calendar when subtracted from now.
MAX_HISTORY_DAYS = 36_500
MAX_HISTORY_MINUTES = MAX_HISTORY_DAYS * UNIT_MINUTES["day"]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: error("Task not found")}


def _history_window(value: int, unit: str) -> timedelta:
    if unit not in UNIT_MINUTES:
        # 400 as in fastapi-taskflow: the request is well formed, the unit unknown.
        raise HTTPException(400, f"unit must be one of min, hour, day; got {unit!r}")
    minutes = value * UNIT_MINUTES[unit]
    if minutes > MAX_HISTORY_MINUTES:
        raise inputs.invalid(
            "query",
            "value",
            f"value must be at most {MAX_HISTORY_DAYS} days ({MAX_HISTORY_DAYS * 24} hours, "
            f"{MAX_HISTORY_MINUTES} min); got {value} {unit}",
        )
    return timedelta(minutes=minutes)


def create_router(
    task_manager: TaskManager, *, path: str = "/tasks", access: AdminAccess | None = None
) -> APIRouter:
    """The task API under ``path``: reads need ``access.viewer``, changes ``access.operator``."""
    access = access or OpenAccess()
    router = PrefixedRouter(
        prefix=path,
        tags=["tasks"],
        dependencies=[Depends(access.viewer)],
        route_class=AdminRoute,
        responses=VIEWER_ERRORS,
    )
    operator = Depends(access.operator)

    @router.get("", response_model=list[TaskOut])
    async def list_tasks(
        request: Request,
        response: Response,
        status: StatusFilter = None,
        func_name: FuncNameFilter = None,
        source: Annotated[str | None, Query(max_length=16)] = None,
        since: datetime | None = None,
        until: datetime | None = None,
        search: SearchFilter = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        cursor: CursorParam = None,
    ) -> list[dict[str, Any]]:
        """Tasks newest first, a page at a time; the next page's cursor is in ``X-Next-Cursor``.

        Text parameters take no NUL characters; times need a timezone.
        """
        query = task_query(
            status=status,
            func_name=func_name,
            source=source,
            since=since,
            until=until,
            search=search,
            limit=limit,
            cursor=cursor,
        )
        page = await task_manager.list_tasks(query)
        if page.next_cursor:
            response.headers["X-Next-Cursor"] = page.next_cursor
            next_url = request.url.include_query_params(cursor=page.next_cursor, limit=limit)
            response.headers["Link"] = f'<{next_url}>; rel="next"'
        return [record.to_dict(include_logs=False) for record in page.items]

    @router.delete(
        "/history",
        response_model=DeletedOut,
        responses={**OPERATOR_ERRORS, 400: error("unit is not min, hour or day")},
    )
    async def delete_history(
        value: Annotated[
            int,
            Query(
                gt=0,
                le=MAX_HISTORY_MINUTES,
                description=f"How many units back, at most {MAX_HISTORY_DAYS} days in all",
            ),
        ],
        unit: Annotated[str, Query(description="min, hour or day")] = "day",
        actor: Actor = operator,
    ) -> dict[str, int]:
        """Delete finished tasks (success, failed, interrupted, cancelled) older than value unit."""
        deleted = await task_manager.delete_history(_history_window(value, unit))
        await task_manager.record_audit(
            "delete_history",
            actor=actor.name,
            detail={"value": value, "unit": unit, "deleted": deleted},
        )
        return {"deleted": deleted}

    @router.get("/metrics", response_model=MetricsOut)
    async def metrics() -> dict[str, Any]:
        """Counts by status, success rate over terminal tasks, per-function durations.

        ``success_rate`` is 0.0 while no task has finished, as in fastapi-taskflow
        (the dashboard, which reads the same figures, shows a dash instead).
        """
        data = (await task_manager.metrics()).to_dict()
        if data["success_rate"] is None:
            data["success_rate"] = 0.0
        return data

    router.include_router(create_system_router(task_manager))
    router.include_router(create_retry_router(task_manager, access))

    @router.get("/{task_id}", response_model=TaskDetailOut, responses=NOT_FOUND)
    async def get_task(task_id: str) -> dict[str, Any]:
        """One task with its log lines."""
        record = await task_manager.get_task(inputs.text(task_id, "task_id", "path"))
        if record is None:
            raise HTTPException(404, "Task not found")
        return record.to_dict()

    @router.post(
        "/{task_id}/cancel",
        response_model=CancelOut,
        responses={**OPERATOR_ERRORS, **NOT_FOUND, 400: error("The task has finished already")},
    )
    async def cancel_task(task_id: str, actor: Actor = operator) -> dict[str, Any]:
        """Cancel a pending or running task (on any instance)."""
        inputs.text(task_id, "task_id", "path")
        try:
            record = await task_manager.cancel(task_id)
        except TaskNotFoundError as exc:
            raise HTTPException(404, "Task not found") from exc
        except InvalidTransitionError as exc:
            raise HTTPException(400, str(exc)) from exc
        await task_manager.record_audit("cancel", actor=actor.name, task_id=task_id)
        return {"task_id": task_id, "task": record.to_dict()}

    return router
