"""Run keys on SQL: arming, replacing and cancelling ``schedule_once()`` tasks.

Arming locks the key's row (``FOR UPDATE``; SQLite's write transaction is
``BEGIN IMMEDIATE`` already), or takes a new key with an insert that skips
duplicates (never raising, so a PostgreSQL transaction is not poisoned).
Two instances arming one key therefore run one after the other: the second
sees the first's task, cancels it and arms its own, and one task stays armed.
The task row, the key and the cancelled predecessor commit together.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from taskflow.db import dialects
from taskflow.db.tables import idempotency_keys_table, run_keys_table, tasks_table
from taskflow.models import ScheduledOnce, TaskRecord, TaskStatus
from taskflow.repository.one_off import CANCELLED, REPLACED
from taskflow.repository.sql import idempotency, stats
from taskflow.repository.sql.mapping import insert_params
from taskflow.repository.sql.schedules import in_transaction

R = run_keys_table
T = tasks_table
K = idempotency_keys_table


class _KeyHeldElsewhere(Exception):
    """Rolls an arming back: a live task other than the replaced one holds its idempotency key."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


async def _locked_holder(conn: AsyncConnection, run_key: str, task_id: str, now: datetime) -> Any:
    """Take ``run_key`` for ``task_id``; the task it named before (None if it was free).

    The key's row is locked before anything is inserted: on InnoDB an insert
    that meets an existing key takes a shared lock, and two arms each
    holding one and asking for ``FOR UPDATE`` would deadlock every time.
    Only the first arms of a new key can still race into a deadlock, which
    ``in_transaction`` retries.
    """
    locked = select(R.c.task_id).where(R.c.run_key == run_key).with_for_update()
    old = (await conn.execute(locked)).scalar()
    if old is None:
        taken = await conn.execute(
            dialects.insert_ignoring_duplicates(conn.dialect, R).values(
                run_key=run_key, task_id=task_id, created_at=now
            )
        )
        if taken.rowcount == 1:
            return None
        old = (await conn.execute(locked)).scalar()  # armed meanwhile by another instance
    await conn.execute(
        update(R).where(R.c.run_key == run_key).values(task_id=task_id, created_at=now)
    )
    return old


async def cancel_pending(
    conn: AsyncConnection, task_id: str, now: datetime, reason: str, stripe: int
) -> bool:
    """Write a still-``pending`` task ``cancelled`` (epoch bumped, counted); whether it was."""
    before = await stats.lock_row(conn, task_id)
    if before is None or before[1] != TaskStatus.PENDING.value:
        return False
    result = await conn.execute(
        update(T)
        .where(and_(T.c.id == task_id, T.c.status == TaskStatus.PENDING.value))
        .values(
            status=TaskStatus.CANCELLED.value,
            updated_at=now,
            finished_at=now,
            owner=None,
            lease_expires_at=None,
            error=reason,
            lease_epoch=T.c.lease_epoch + 1,
        )
    )
    if result.rowcount != 1:
        return False
    await stats.apply_delta(conn, stats.moved(before, TaskStatus.CANCELLED.value), stripe)
    return True


async def arm(
    write_engine: AsyncEngine, run_key: str, record: TaskRecord, now: datetime, stripe: int
) -> str:
    """``OneOffRecords.arm_once`` on SQL."""

    async def work(conn: AsyncConnection) -> str:
        old = await _locked_holder(conn, run_key, record.task_id, now)
        replaced = old is not None and await cancel_pending(conn, str(old), now, REPLACED, stripe)
        key = record.idempotency_key
        if key is None:
            await conn.execute(insert(T).values(insert_params(record)))
            return record.task_id
        if replaced:
            # The replaced task's idempotency key passes to its replacement.
            await conn.execute(
                update(K).where(K.c.key == key, K.c.task_id == old).values(task_id=record.task_id)
            )
            holder = (await conn.execute(select(K.c.task_id).where(K.c.key == key))).scalar()
            if holder == record.task_id:
                await conn.execute(insert(T).values(insert_params(record)))
                return record.task_id
        holder = await idempotency.settle(conn, key, record)
        if holder != record.task_id:
            raise _KeyHeldElsewhere(holder or "")
        return record.task_id

    try:
        return await in_transaction(write_engine, work)
    except _KeyHeldElsewhere as held:
        return held.holder


async def cancel(write_engine: AsyncEngine, run_key: str, now: datetime, stripe: int) -> bool:
    """``OneOffRecords.cancel_once`` on SQL: the key's row goes whatever its task's state."""

    async def work(conn: AsyncConnection) -> bool:
        stmt = select(R.c.task_id).where(R.c.run_key == run_key).with_for_update()
        task_id = (await conn.execute(stmt)).scalar()
        if task_id is None:
            return False
        await conn.execute(R.delete().where(R.c.run_key == run_key))
        return await cancel_pending(conn, str(task_id), now, CANCELLED, stripe)

    return await in_transaction(write_engine, work)


async def armed(engine: AsyncEngine, before: datetime | None) -> list[ScheduledOnce]:
    """``OneOffRecords.list_once`` on SQL: one join, soonest first."""
    stmt = (
        select(R.c.run_key, T.c.id, T.c.func_name, T.c.run_at, T.c.priority, T.c.tags)
        .join(T, T.c.id == R.c.task_id)
        .where(T.c.status == TaskStatus.PENDING.value)
        .order_by(T.c.run_at, R.c.run_key)
    )
    if before is not None:
        stmt = stmt.where(T.c.run_at < before)
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return [
        ScheduledOnce(
            run_key=row.run_key,
            task_id=row.id,
            func_name=row.func_name,
            fire_at=row.run_at,
            priority=row.priority,
            tags=dict(row.tags or {}),
        )
        for row in rows
    ]


class SqlOneOffs:
    """The run-key methods of ``SqlTaskRepository`` (``OneOffRecords``)."""

    # Set by SqlTaskRepository.__init__ (see SqlSchedules).
    engine: AsyncEngine
    write_engine: AsyncEngine
    stats_stripe: int

    async def arm_once(self, run_key: str, record: TaskRecord, *, now: datetime) -> str:
        return await arm(self.write_engine, run_key, record, now, self.stats_stripe)

    async def cancel_once(self, run_key: str, *, now: datetime) -> bool:
        return await cancel(self.write_engine, run_key, now, self.stats_stripe)

    async def list_once(self, *, before: datetime | None = None) -> list[ScheduledOnce]:
        return await armed(self.engine, before)
