"""Deleting finished history: by retention_days and by DELETE /tasks/history."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from taskflow import TaskAdmin, TaskManager, TaskStatus
from taskflow.db.tables import task_logs_table as L
from taskflow.db.tables import tasks_table as T
from taskflow.ids import new_task_id
from taskflow.models import TaskLogEntry, TaskRecord, utcnow
from taskflow.repository.base import WriteBatch


def aged(status: TaskStatus, days: float) -> TaskRecord:
    moment = utcnow() - timedelta(days=days)
    return TaskRecord(
        task_id=new_task_id(),
        func_name="report",
        status=status,
        created_at=moment,
        run_at=moment,
        updated_at=moment,
        end_time=moment if status.is_terminal else None,
    )


async def seed(manager: TaskManager) -> dict[str, TaskRecord]:
    rows = {
        "old_success": aged(TaskStatus.SUCCESS, 10),
        "old_failed": aged(TaskStatus.FAILED, 10),
        "old_cancelled": aged(TaskStatus.CANCELLED, 10),
        "old_interrupted": aged(TaskStatus.INTERRUPTED, 10),
        "old_pending": aged(TaskStatus.PENDING, 10),
        "old_running": aged(TaskStatus.RUNNING, 10),
        "new_success": aged(TaskStatus.SUCCESS, 0.5),
    }
    logs = [TaskLogEntry(r.task_id, 0, "info", "line", r.created_at) for r in rows.values()]
    await manager.repository.apply(WriteBatch(inserts=list(rows.values()), logs=logs))
    return rows


async def remaining(engine: Any, rows: dict[str, TaskRecord]) -> set[str]:
    ids = {r.task_id: name for name, r in rows.items()}
    async with engine.connect() as conn:
        found = (await conn.execute(select(T.c.id).where(T.c.id.in_(list(ids))))).scalars()
        names = {ids[i] for i in found}
        orphans = await conn.execute(
            select(func.count()).where(
                L.c.task_id.in_(list(ids)), L.c.task_id.not_in(select(T.c.id))
            )
        )
        assert orphans.scalar() == 0  # logs go with their task
    return names


KEPT = {"old_pending", "old_running", "new_success"}


async def test_retention_prunes_terminal_rows_only(schema_db_url: str, engine: Any) -> None:
    manager = TaskManager(database_url=schema_db_url, retention_days=7)
    await manager.startup()
    try:
        rows = await seed(manager)
        assert manager.retention is not None
        assert await manager.retention.prune() == 4
        assert await manager.retention.prune() == 0
    finally:
        await manager.shutdown()
    assert await remaining(engine, rows) == KEPT


async def test_delete_history_route(schema_db_url: str, engine: Any) -> None:
    manager = TaskManager(database_url=schema_db_url)
    app = FastAPI()
    TaskAdmin(app, manager, retention_days=30)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    async with app.router.lifespan_context(app), client:
        assert manager.retention is not None and manager.retention.days == 30
        rows = await seed(manager)
        assert (await client.delete("/tasks/history", params={"value": 0})).status_code == 422
        bad_unit = await client.delete("/tasks/history", params={"value": 1, "unit": "week"})
        assert bad_unit.status_code == 400
        assert "min, hour, day" in bad_unit.json()["detail"]
        answer = await client.delete("/tasks/history", params={"value": 2, "unit": "day"})
        assert answer.status_code == 200 and answer.json() == {"deleted": 4}
        answer = await client.delete("/tasks/history", params={"value": 30, "unit": "min"})
        assert answer.json() == {"deleted": 1}  # the half-day-old success
    assert await remaining(engine, rows) == {"old_pending", "old_running"}
