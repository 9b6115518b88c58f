"""Live instances with their running-task counts, in one query for the admin API."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from taskflow.db.tables import instances_table, tasks_table
from taskflow.models import TaskStatus
from taskflow.repository.base import InstanceInfo, InstanceStatus

T = tasks_table
I = instances_table  # noqa: E741 - mirrors T for the tasks table


async def live(engine: AsyncEngine, alive_since: datetime) -> list[InstanceStatus]:
    """See ``TaskRepository.list_live_instances``.

    The running counts come from one grouped subquery joined to the
    instances, not one count per instance.
    """
    running = (
        select(T.c.owner, func.count().label("running"))
        .where(T.c.status == TaskStatus.RUNNING.value, T.c.owner.is_not(None))
        .group_by(T.c.owner)
        .subquery()
    )
    stmt = (
        select(I, func.coalesce(running.c.running, 0).label("running_count"))
        .select_from(I.outerjoin(running, running.c.owner == I.c.id))
        .where(I.c.heartbeat_at >= alive_since, I.c.stopped_at.is_(None))
        .order_by(I.c.heartbeat_at.desc(), I.c.id)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).mappings().all()
    return [
        InstanceStatus(
            instance=InstanceInfo(
                instance_id=row["id"],
                hostname=row["hostname"],
                pid=row["pid"],
                started_at=row["started_at"],
                heartbeat_at=row["heartbeat_at"],
                version=row["version"],
            ),
            running=int(row["running_count"]),
        )
        for row in rows
    ]
