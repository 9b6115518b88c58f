"""``GET /ready``: a readiness probe that says whether this instance can take tasks now.

200 ``{"ready": true, "reason": null}`` or 503 ``{"ready": false, "reason": "..."}``.
Unauthenticated and outside the dashboard on purpose: a load balancer or an
orchestrator calls it, and it tells nothing about any task.  It reads only
this process's state (no query), so probing it often costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter
from fastapi.responses import JSONResponse

if TYPE_CHECKING:
    from taskflow.manager import TaskManager


def create_readiness_router(manager: TaskManager, path: str = "/ready") -> APIRouter:
    """A router with one route, ``GET {path}``, answering from ``manager.readiness()``."""
    router = APIRouter()

    @router.get(path, include_in_schema=False)
    async def ready() -> JSONResponse:
        state = manager.readiness()
        return JSONResponse(
            {"ready": state.ready, "reason": state.reason},
            status_code=200 if state.ready else 503,
        )

    return router
