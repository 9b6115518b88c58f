"""Idempotency keys: one live task per key, across every process sharing the database.

The key table's primary key is the arbiter.  A key is taken with an insert
that skips duplicates (never raising, so a PostgreSQL transaction is not
poisoned); whoever inserted it owns it.  A key whose task failed (or was
deleted) is taken over with a guarded UPDATE on the old owner's id, so two
instances retrying the same failed key still produce one task.  The new task
row is inserted in the same transaction as its key: a key never points at a
task that does not exist.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from taskflow.db import dialects
from taskflow.db.tables import idempotency_keys_table, tasks_table
from taskflow.exceptions import TaskflowError
from taskflow.models import TaskRecord, TaskStatus, utcnow
from taskflow.repository.sql.errors import is_deadlock
from taskflow.repository.sql.mapping import insert_params

K = idempotency_keys_table
T = tasks_table
# A key stays taken by its task unless the task failed: fastapi-taskflow's rule.
FREES_THE_KEY = (TaskStatus.FAILED.value,)
MAX_ROUNDS = 5


async def insert_with_key(write_engine: AsyncEngine, record: TaskRecord) -> str:
    """Insert ``record`` unless its key belongs to a live task; return the owning task's id."""
    key = record.idempotency_key
    if key is None:
        raise ValueError("insert_with_key needs a record with an idempotency_key")
    for attempt in range(MAX_ROUNDS):
        try:
            async with write_engine.begin() as conn:
                winner = await settle(conn, key, record)
        except DBAPIError as exc:
            # InnoDB may pick one of two racing transactions as a deadlock
            # victim; the answer is simply to run it again.
            if not is_deadlock(exc) or attempt == MAX_ROUNDS - 1:
                raise
            await asyncio.sleep(0.005 * (attempt + 1))
            continue
        if winner is not None:
            return winner
    raise TaskflowError(f"idempotency key {key!r} kept changing hands; try again")


async def settle(conn: AsyncConnection, key: str, record: TaskRecord) -> str | None:
    """One round of taking ``key`` for ``record`` on ``conn`` (in its transaction).

    Returns the id of the task holding the key, or None to go round again.
    """
    now = utcnow()
    taken = await conn.execute(
        dialects.insert_ignoring_duplicates(conn.dialect, K).values(
            key=key, task_id=record.task_id, created_at=now
        )
    )
    if taken.rowcount == 1:
        await conn.execute(insert(T).values(insert_params(record)))
        return record.task_id
    holder = (await conn.execute(select(K.c.task_id).where(K.c.key == key))).scalar()
    if holder is None:
        return None  # released between our insert and our read: go round again
    status = (await conn.execute(select(T.c.status).where(T.c.id == holder))).scalar()
    if status is not None and status not in FREES_THE_KEY:
        return str(holder)
    moved = await conn.execute(
        update(K)
        .where(K.c.key == key, K.c.task_id == holder)
        .values(task_id=record.task_id, created_at=now)
    )
    if moved.rowcount != 1:
        return None
    await conn.execute(insert(T).values(insert_params(record)))
    return record.task_id
