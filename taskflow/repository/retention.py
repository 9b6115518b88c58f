"""Deleting finished history: terminal rows older than a cutoff, with their logs and keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from taskflow.db.tables import idempotency_keys_table, task_logs_table, tasks_table
from taskflow.models import TERMINAL_STATUSES

T = tasks_table
TERMINAL = [status.value for status in TERMINAL_STATUSES]


async def delete_finished_before(write_engine: AsyncEngine, cutoff: datetime, batch: int) -> int:
    """Delete terminal tasks that finished before ``cutoff``, ``batch`` rows per transaction.

    Pending and running tasks are never touched, whatever their age.  Short
    transactions keep a large purge from holding locks the writer needs.
    """
    deleted = 0
    while True:
        async with write_engine.begin() as conn:
            ids = list(
                (
                    await conn.execute(
                        select(T.c.id)
                        .where(T.c.finished_at < cutoff, T.c.status.in_(TERMINAL))
                        .limit(batch)
                    )
                ).scalars()
            )
            if not ids:
                return deleted
            await conn.execute(delete(task_logs_table).where(task_logs_table.c.task_id.in_(ids)))
            await conn.execute(
                delete(idempotency_keys_table).where(idempotency_keys_table.c.task_id.in_(ids))
            )
            result = await conn.execute(delete(T).where(T.c.id.in_(ids), T.c.status.in_(TERMINAL)))
            deleted += int(result.rowcount or 0)
        if len(ids) < batch:
            return deleted
