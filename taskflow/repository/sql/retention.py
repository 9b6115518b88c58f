"""Deleting finished history: terminal rows older than a cutoff, with their logs and keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from taskflow.db import dialects
from taskflow.db.tables import (
    idempotency_keys_table,
    run_keys_table,
    task_logs_table,
    tasks_table,
)
from taskflow.models import TERMINAL_STATUSES
from taskflow.repository.sql import stats

T = tasks_table
TERMINAL = [status.value for status in TERMINAL_STATUSES]


async def delete_finished_before(
    write_engine: AsyncEngine, cutoff: datetime, batch: int, stripe: int
) -> int:
    """Delete terminal tasks that finished before ``cutoff``, ``batch`` rows per transaction.

    Pending and running tasks are never touched, whatever their age.  Short
    transactions keep a large purge from holding locks the writer needs.
    Each transaction subtracts exactly the rows it deletes from the
    statistics roll-up (in ``stripe``): the rows are locked when selected,
    and another instance purging at the same time skips them where the
    database can (``SKIP LOCKED``) or waits for them and finds them gone.
    """
    skip_locked = dialects.supports_skip_locked(write_engine.dialect)
    deleted = 0
    while True:
        async with write_engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(T.c.id, T.c.func_name, T.c.status, T.c.duration_ms)
                    .where(T.c.finished_at < cutoff, T.c.status.in_(TERMINAL))
                    .limit(batch)
                    .with_for_update(skip_locked=skip_locked)
                )
            ).all()
            if not rows:
                return deleted
            ids = [row.id for row in rows]
            await conn.execute(delete(task_logs_table).where(task_logs_table.c.task_id.in_(ids)))
            await conn.execute(
                delete(idempotency_keys_table).where(idempotency_keys_table.c.task_id.in_(ids))
            )
            await conn.execute(delete(run_keys_table).where(run_keys_table.c.task_id.in_(ids)))
            await conn.execute(delete(T).where(T.c.id.in_(ids)))
            delta = stats.StatsDelta()
            for row in rows:
                delta.add(row.func_name, row.status, row.duration_ms, -1)
            await stats.apply_delta(conn, delta, stripe)
            deleted += len(rows)
        if len(rows) < batch:
            return deleted
