"""The schedules API: list, pause and resume, answered from the database by any instance."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel

from taskflow.schedules import ScheduleNotFoundError, ScheduleState
from taskflow.web import inputs
from taskflow.web.access import Actor, AdminAccess, OpenAccess
from taskflow.web.admin_route import AdminRoute
from taskflow.web.prefixed_router import PrefixedRouter
from taskflow.web.schemas import OPERATOR_ERRORS, VIEWER_ERRORS, error

if TYPE_CHECKING:
    from taskflow.manager import TaskManager


class ScheduleOut(BaseModel):
    """A schedule: its trigger, next and last run, last task and whether it is paused."""

    name: str
    func_name: str
    trigger: str
    every: float | None = None
    cron: str | None = None
    timezone: str = "UTC"
    next_run: datetime | None = None
    last_run: datetime | None = None
    last_task_id: str | None = None
    last_status: str | None = None
    paused: bool = False


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    **OPERATOR_ERRORS,
    404: error("No schedule has that name"),
}


def create_schedule_router(
    task_manager: TaskManager, *, path: str = "/tasks", access: AdminAccess | None = None
) -> APIRouter:
    """``GET {path}/schedules`` and ``POST {path}/schedules/{name}/pause|resume``.

    Include it before the task router, whose ``{path}/{task_id}`` would
    otherwise answer ``GET {path}/schedules``.
    """
    access = access or OpenAccess()
    router = PrefixedRouter(
        prefix=f"{path}/schedules",
        tags=["schedules"],
        dependencies=[Depends(access.viewer)],
        route_class=AdminRoute,
        responses=VIEWER_ERRORS,
    )

    @router.get("", response_model=list[ScheduleOut])
    async def list_schedules() -> list[dict[str, Any]]:
        """Every schedule (all instances share them), by name."""
        return [state.to_dict() for state in await task_manager.list_schedules()]

    operator = Depends(access.operator)

    async def change(
        name: str, action: str, apply: Callable[[str], Awaitable[ScheduleState]], actor: Actor
    ) -> dict[str, Any]:
        inputs.text(name, "name", "path")
        try:
            state = await apply(name)
        except ScheduleNotFoundError as exc:
            raise HTTPException(404, str(exc)) from exc
        await task_manager.record_audit(action, actor=actor.name, detail={"schedule": name})
        return state.to_dict()

    @router.post("/{name}/pause", response_model=ScheduleOut, responses=NOT_FOUND)
    async def pause_schedule(name: str, actor: Actor = operator) -> dict[str, Any]:
        """Stop firing the schedule, on every instance, until it is resumed."""
        return await change(name, "schedule_pause", task_manager.pause_schedule, actor)

    @router.post("/{name}/resume", response_model=ScheduleOut, responses=NOT_FOUND)
    async def resume_schedule(name: str, actor: Actor = operator) -> dict[str, Any]:
        """Fire the schedule again from its next slot; runs missed while paused are skipped."""
        return await change(name, "schedule_resume", task_manager.resume_schedule, actor)

    return router
