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
from taskflow.web import inputs
from taskflow.web.access import Actor, AdminAccess
from taskflow.web.admin_route import AdminRoute
from taskflow.web.schemas import OPERATOR_ERRORS, BulkRetryIn, RetryOut, RetryReportOut, error

if TYPE_CHECKING:
    from taskflow.manager import TaskManager

RETRY_ERRORS: dict[int | str, dict[str, Any]] = {
    **OPERATOR_ERRORS,
    404: error("Task not found"),
    400: error("The task is not failed or interrupted"),
    409: error("Its function (or argument key) is not available in this process"),
}
SINCE_HELP = "How far back: <N>m, <N>h or <N>d (e.g. 30m, 6h, 7d), or 'all'"


def create_retry_router(task_manager: TaskManager, access: AdminAccess) -> APIRouter:
    """The retry routes, without prefix: ``create_router`` mounts them under its own."""
    router = APIRouter(route_class=AdminRoute, responses=OPERATOR_ERRORS)
    operator = Depends(access.operator)

    @router.post(
        "/bulk-retry",
        response_model=RetryReportOut,
        responses={400: error("The body is not JSON encoded as UTF-8")},
    )
    async def bulk_retry(body: BulkRetryIn, actor: Actor = operator) -> dict[str, Any]:
        """Retry the listed failed or interrupted tasks; the others are counted as skipped."""
        task_ids = inputs.texts(body.task_ids, "task_ids")
        report = await task_manager.bulk_retry(task_ids, actor=actor.name)
        return report.to_dict()

    @router.post(
        "/retry-failed",
        response_model=RetryReportOut,
        responses={400: error("since is not <N>m|h|d or all")},
    )
    async def retry_failed(
        since: Annotated[str, Query(description=SINCE_HELP)] = "6h",
        func_name: Annotated[str | None, Query(max_length=255)] = None,
        actor: Actor = operator,
    ) -> dict[str, Any]:
        """Retry the newest failed or interrupted attempt of each task created within ``since``.

        A task retried before counts once: its newest attempt is retried, and
        not at all while that attempt is pending, running or succeeded.  One
        call creates at most ``limit`` retries; ``capped`` then says to call
        again for the rest.
        """
        func_name = inputs.optional_text(func_name, "func_name")
        try:
            report = await task_manager.retry_failed(since, func_name, actor=actor.name)
        except InvalidWindowError as exc:
            raise HTTPException(400, str(exc)) from exc
        return report.to_dict()

    @router.post("/{task_id}/retry", response_model=RetryOut, responses=RETRY_ERRORS)
    async def retry_task(task_id: str, actor: Actor = operator) -> dict[str, Any]:
        """Run a failed or interrupted task again as a new task with the same arguments."""
        inputs.text(task_id, "task_id", "path")
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
