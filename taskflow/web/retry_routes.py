"""``POST {path}/{task_id}/retry``, ``{path}/bulk-retry`` and ``{path}/retry-failed``.

Every retry is a new task row that any instance's dispatcher claims and
runs, so any instance can answer these; the work itself is in
``taskflow.replay``.  Each call is recorded in the audit log with its actor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query

from taskflow.exceptions import (
    ConfigurationError,
    FunctionNotRegisteredError,
    InvalidTransitionError,
    TaskNotFoundError,
)
from taskflow.replay import InvalidWindowError
from taskflow.web.access import Actor, AdminAccess
from taskflow.web.schemas import BulkRetryIn, RetryOut, RetryReportOut

if TYPE_CHECKING:
    from taskflow.manager import TaskManager

RETRY_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "Task not found"},
    400: {"description": "The task is not failed or interrupted"},
    409: {"description": "Its function (or argument key) is not available in this process"},
}
SINCE_HELP = "How far back: <N>m, <N>h or <N>d (e.g. 30m, 6h, 7d), or 'all'"


def create_retry_router(task_manager: TaskManager, access: AdminAccess) -> APIRouter:
    """The retry routes, without prefix: ``create_router`` mounts them under its own."""
    router = APIRouter()
    operator = Depends(access.operator)

    @router.post("/bulk-retry", response_model=RetryReportOut)
    async def bulk_retry(body: BulkRetryIn, actor: Actor = operator) -> dict[str, Any]:
        """Retry the listed failed or interrupted tasks; the others are counted as skipped."""
        report = await task_manager.bulk_retry(body.task_ids, actor=actor.name)
        return report.to_dict()

    @router.post(
        "/retry-failed",
        response_model=RetryReportOut,
        responses={400: {"description": "since is not <N>m|h|d or all"}},
    )
    async def retry_failed(
        since: Annotated[str, Query(description=SINCE_HELP)] = "6h",
        func_name: Annotated[str | None, Query(max_length=255)] = None,
        actor: Actor = operator,
    ) -> dict[str, Any]:
        """Retry every failed or interrupted task created within ``since`` (max 100,000)."""
        try:
            report = await task_manager.retry_failed(since, func_name, actor=actor.name)
        except InvalidWindowError as exc:
            raise HTTPException(400, str(exc)) from exc
        return report.to_dict()

    @router.post("/{task_id}/retry", response_model=RetryOut, responses=RETRY_ERRORS)
    async def retry_task(task_id: str, actor: Actor = operator) -> dict[str, Any]:
        """Run a failed or interrupted task again as a new task with the same arguments."""
        try:
            record = await task_manager.retry(task_id, actor=actor.name)
        except TaskNotFoundError as exc:
            raise HTTPException(404, "Task not found") from exc
        except InvalidTransitionError as exc:
            raise HTTPException(400, str(exc)) from exc
        except (FunctionNotRegisteredError, ConfigurationError) as exc:
            raise HTTPException(409, str(exc)) from exc
        return {"task_id": record.task_id, "task": record.to_dict()}

    return router
