"""``GET {path}/audit``, ``{path}/instances`` and ``{path}/functions``: the deployment at a glance.

The audit log and the instances come from the database (every instance
answers alike); the functions are this process's registry, which is what
the dashboard's "Tasks" tab shows and what a retry here can run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from taskflow.web.admin_route import AdminRoute
from taskflow.web.function_settings import function_settings
from taskflow.web.schemas import AuditOut, FunctionOut, InstanceOut

if TYPE_CHECKING:
    from taskflow.manager import TaskManager

MAX_AUDIT_PAGE = 500
# Entry ids are 64-bit signed integers on every database.
MAX_ENTRY_ID = 2**63 - 1


def create_system_router(task_manager: TaskManager) -> APIRouter:
    """The read-only routes, without prefix: ``create_router`` mounts them under its own."""
    router = APIRouter(route_class=AdminRoute)

    @router.get("/audit", response_model=list[AuditOut])
    async def audit_log(
        request: Request,
        response: Response,
        limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_PAGE)] = 100,
        before: Annotated[
            int | None,
            Query(ge=1, le=MAX_ENTRY_ID, description="entry_id to continue below"),
        ] = None,
    ) -> list[dict[str, Any]]:
        """Audit entries newest first; the next page's ``before`` is in ``X-Next-Cursor``."""
        entries = await task_manager.list_audit(limit=limit + 1, before=before)
        if len(entries) > limit:
            entries = entries[:limit]
            cursor = str(entries[-1].entry_id)
            response.headers["X-Next-Cursor"] = cursor
            next_url = request.url.include_query_params(before=cursor, limit=limit)
            response.headers["Link"] = f'<{next_url}>; rel="next"'
        return [entry.to_dict() for entry in entries]

    @router.get("/instances", response_model=list[InstanceOut])
    async def instances() -> list[dict[str, Any]]:
        """Instances alive now (heartbeat within the lease), with their running task counts."""
        return [
            {
                "instance_id": status.instance.instance_id,
                "hostname": status.instance.hostname,
                "pid": status.instance.pid,
                "started_at": status.instance.started_at,
                "heartbeat_at": status.instance.heartbeat_at,
                "version": status.instance.version,
                "running": status.running,
            }
            for status in await task_manager.list_instances()
        ]

    @router.get("/functions", response_model=list[FunctionOut])
    async def functions() -> list[dict[str, Any]]:
        """The task functions registered in this process, by name, with their settings."""
        return function_settings(task_manager)

    return router
