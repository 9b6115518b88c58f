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
from taskflow.models import TaskStatus
from taskflow.repository.base import TaskQuery
from taskflow.repository.cursor import InvalidCursorError
from taskflow.web.access import Actor, AdminAccess, OpenAccess
from taskflow.web.prefixed_router import PrefixedRouter
from taskflow.web.retry_routes import create_retry_router
from taskflow.web.schemas import CancelOut, DeletedOut, MetricsOut, TaskDetailOut, TaskOut
from taskflow.web.system_routes import create_system_router

if TYPE_CHECKING:
    from taskflow.manager import TaskManager

MAX_PAGE = 500
UNIT_MINUTES = {"min": 1, "hour": 60, "day": 24 * 60}


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise HTTPException(422, f"{name} needs a timezone, e.g. 2026-01-31T12:00:00Z")
    return value


def create_router(
    task_manager: TaskManager, *, path: str = "/tasks", access: AdminAccess | None = None
) -> APIRouter:
    """The task API under ``path``: reads need ``access.viewer``, changes ``access.operator``."""
    access = access or OpenAccess()
    router = PrefixedRouter(prefix=path, tags=["tasks"], dependencies=[Depends(access.viewer)])
    operator = Depends(access.operator)

    @router.get("", response_model=list[TaskOut])
    async def list_tasks(
        request: Request,
        response: Response,
        status: Annotated[list[TaskStatus] | None, Query()] = None,
        func_name: str | None = None,
        source: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        search: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        cursor: str | None = None,
    ) -> list[dict[str, Any]]:
        """Tasks newest first, a page at a time; the next page's cursor is in ``X-Next-Cursor``."""
        query = TaskQuery(
            status=status,
            func_name=func_name,
            source=source,
            created_since=_aware(since, "since"),
            created_until=_aware(until, "until"),
            search=search,
            limit=limit,
            cursor=cursor,
        )
        try:
            page = await task_manager.list_tasks(query)
        except InvalidCursorError as exc:
            raise HTTPException(422, str(exc)) from exc
        if page.next_cursor:
            response.headers["X-Next-Cursor"] = page.next_cursor
            next_url = request.url.include_query_params(cursor=page.next_cursor, limit=limit)
            response.headers["Link"] = f'<{next_url}>; rel="next"'
        return [record.to_dict(include_logs=False) for record in page.items]

    @router.delete("/history", response_model=DeletedOut)
    async def delete_history(
        value: Annotated[int, Query(gt=0, description="How many units back")],
        unit: Annotated[str, Query(description="min, hour or day")] = "day",
        actor: Actor = operator,
    ) -> dict[str, int]:
        """Delete finished tasks (success, failed, interrupted, cancelled) older than value unit."""
        if unit not in UNIT_MINUTES:
            # 400 as in fastapi-taskflow: the request is well formed, the unit unknown.
            raise HTTPException(400, f"unit must be one of min, hour, day; got {unit!r}")
        deleted = await task_manager.delete_history(timedelta(minutes=value * UNIT_MINUTES[unit]))
        await task_manager.record_audit(
            "delete_history",
            actor=actor.name,
            detail={"value": value, "unit": unit, "deleted": deleted},
        )
        return {"deleted": deleted}

    @router.get("/metrics", response_model=MetricsOut)
    async def metrics() -> dict[str, Any]:
        """Counts by status, success rate over terminal tasks, per-function durations."""
        return (await task_manager.metrics()).to_dict()

    router.include_router(create_system_router(task_manager))
    router.include_router(create_retry_router(task_manager, access))

    @router.get(
        "/{task_id}",
        response_model=TaskDetailOut,
        responses={404: {"description": "Task not found"}},
    )
    async def get_task(task_id: str) -> dict[str, Any]:
        """One task with its log lines."""
        record = await task_manager.get_task(task_id)
        if record is None:
            raise HTTPException(404, "Task not found")
        return record.to_dict()

    @router.post(
        "/{task_id}/cancel",
        response_model=CancelOut,
        responses={404: {"description": "Task not found"}, 400: {"description": "Finished"}},
    )
    async def cancel_task(task_id: str, actor: Actor = operator) -> dict[str, Any]:
        """Cancel a pending or running task (on any instance)."""
        try:
            record = await task_manager.cancel(task_id)
        except TaskNotFoundError as exc:
            raise HTTPException(404, "Task not found") from exc
        except InvalidTransitionError as exc:
            raise HTTPException(400, str(exc)) from exc
        await task_manager.record_audit("cancel", actor=actor.name, task_id=task_id)
        return {"task_id": task_id, "task": record.to_dict()}

    return router
