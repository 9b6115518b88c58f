"""Claims, leases and instance rows: the SQL that decides which instance holds a task.

Kept apart from the read/write repository because this is the part where
the dialects differ most (``SKIP LOCKED``, ``RETURNING``) and where a mistake
means a task runs twice.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, not_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from taskflow.db import dialects
from taskflow.db.tables import instances_table, tasks_table
from taskflow.models import TaskRecord, TaskStatus
from taskflow.repository.base import InstanceInfo
from taskflow.repository.sql.mapping import record_from_row

T = tasks_table
I = instances_table  # noqa: E741 - mirrors T for the tasks table
ACTIVE = (TaskStatus.PENDING.value, TaskStatus.RUNNING.value)
HEARTBEAT_CHUNK = 500  # ids per renewing UPDATE: well within every driver's parameter limit


@dataclass(frozen=True)
class ClaimKind:
    """What one claim takes, and whether it records the start of what it takes.

    ``take_expired``: also rows another owner's expired lease still names.
    ``start_executor``: only due pending rows of that executor, which the
    claim makes ``running`` (see ``TaskRepository.claim``).  ``leave_to_start``:
    executors whose pending rows a plain claim leaves to such claims.
    """

    take_expired: bool = True
    start_executor: str | None = None
    leave_to_start: tuple[str, ...] = ()


def _claimable(owner: str, now: datetime, kind: ClaimKind) -> Any:
    due = and_(T.c.status == TaskStatus.PENDING.value, T.c.run_at <= now)
    others_expired = and_(T.c.owner != owner, T.c.lease_expires_at < now)
    if kind.take_expired:
        pending_due = and_(due, or_(T.c.owner.is_(None), others_expired))
    else:
        pending_due = and_(due, T.c.owner.is_(None))
    if kind.start_executor is not None:
        return and_(pending_due, T.c.executor == kind.start_executor)
    if kind.leave_to_start:
        # NULL executors (rows written by other tools) stay claimable here.
        left = and_(T.c.executor.is_not(None), T.c.executor.in_(kind.leave_to_start))
        pending_due = and_(pending_due, not_(left))
    if not kind.take_expired:
        return pending_due
    abandoned = and_(T.c.status == TaskStatus.RUNNING.value, others_expired)
    return or_(pending_due, abandoned)


def _claim_values(
    owner: str, now: datetime, lease_until: datetime, kind: ClaimKind
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "owner": owner,
        "lease_epoch": T.c.lease_epoch + 1,
        "lease_expires_at": lease_until,
        "updated_at": now,
    }
    if kind.start_executor is not None:
        # The same columns the runner sets when it records a start itself.
        values.update(
            status=TaskStatus.RUNNING.value, started_at=now, finished_at=None, duration_ms=None
        )
    return values


def claim_candidates(dialect: Any, owner: str, now: datetime, limit: int, kind: ClaimKind) -> Any:
    """The rows a claim takes: due, nobody alive holds them, highest priority first."""
    return (
        select(T.c.id)
        .where(_claimable(owner, now, kind))
        .order_by(dialects.priority_first(dialect, T.c.priority), T.c.run_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


def claim_ids_statement(
    dialect: Any, owner: str, now: datetime, lease_until: datetime, limit: int, kind: ClaimKind
) -> Any:
    """``UPDATE ... WHERE id IN (candidates) RETURNING id`` (PostgreSQL, SQLite)."""
    candidates = claim_candidates(dialect, owner, now, limit, kind)
    values = _claim_values(owner, now, lease_until, kind)
    return update(T).where(T.c.id.in_(candidates)).values(values).returning(T.c.id)


async def read_claimed(engine: AsyncEngine, ids: list[str]) -> list[TaskRecord]:
    """The full rows of tasks just claimed."""
    if not ids:
        return []
    async with engine.connect() as conn:
        rows = (await conn.execute(select(T).where(T.c.id.in_(ids)))).mappings().all()
    return [record_from_row(r) for r in rows]


async def claim(
    write_engine: AsyncEngine,
    owner: str,
    *,
    now: datetime,
    lease_until: datetime,
    limit: int,
    kind: ClaimKind,
) -> list[TaskRecord]:
    """See ``TaskRepository.claim``."""
    dialect = write_engine.dialect
    candidates = claim_candidates(dialect, owner, now, limit, kind)
    values = _claim_values(owner, now, lease_until, kind)
    async with write_engine.begin() as conn:
        if dialects.claim_with_update_returning(dialect):
            stmt = update(T).where(T.c.id.in_(candidates)).values(values).returning(*T.c)
            rows = (await conn.execute(stmt)).mappings().all()
            return [record_from_row(r) for r in rows]
        return await _claim_in_steps(conn, candidates, values)


async def _claim_in_steps(
    conn: AsyncConnection, candidates: Any, values: dict[str, Any]
) -> list[TaskRecord]:
    # MySQL/MariaDB: the SKIP LOCKED select locks the rows we take until commit.
    ids = list((await conn.execute(candidates)).scalars())
    if not ids:
        return []
    await conn.execute(update(T).where(T.c.id.in_(ids)).values(values))
    rows = (await conn.execute(select(T).where(T.c.id.in_(ids)))).mappings().all()
    return [record_from_row(r) for r in rows]


async def heartbeat(
    write_engine: AsyncEngine,
    instance: InstanceInfo,
    lease_until: datetime,
    held: Collection[str],
) -> int:
    """See ``TaskRepository.heartbeat``.

    Only the rows this instance holds are renewed, not every active row
    naming it as owner: a row whose final write never reached the database
    (refused, or lost with the process's memory) must have its lease run out,
    so that another instance finds it, instead of being kept alive for as
    long as this instance lives.  One UPDATE per 500 held tasks.
    """
    ids = sorted(held)
    renewed = 0
    async with write_engine.begin() as conn:
        await conn.execute(
            update(I)
            .where(I.c.id == instance.instance_id)
            .values(heartbeat_at=instance.heartbeat_at)
        )
        for start in range(0, len(ids), HEARTBEAT_CHUNK):
            owned = (
                T.c.id.in_(ids[start : start + HEARTBEAT_CHUNK]),
                T.c.owner == instance.instance_id,
                T.c.status.in_(ACTIVE),
            )
            # Lock the rows in id order first, the order the group commit uses:
            # an UPDATE alone locks them in index order, and the two transactions
            # of one instance could then deadlock on a pair of its own rows.
            await conn.execute(select(T.c.id).where(*owned).order_by(T.c.id).with_for_update())
            result = await conn.execute(
                update(T).where(*owned).values(lease_expires_at=lease_until)
            )
            renewed += int(result.rowcount or 0)
    return renewed


async def register_instance(write_engine: AsyncEngine, instance: InstanceInfo) -> None:
    """Insert the instance's row, or refresh it (a live row again) if the id is known."""
    values = {
        "hostname": instance.hostname,
        "pid": instance.pid,
        "started_at": instance.started_at,
        "heartbeat_at": instance.heartbeat_at,
        "version": instance.version,
        "stopped_at": None,
    }
    async with write_engine.begin() as conn:
        # Update first, insert when nothing matched: the same two statements
        # on every dialect, where each has its own upsert syntax.
        refreshed = await conn.execute(
            update(I).where(I.c.id == instance.instance_id).values(values)
        )
        if not refreshed.rowcount:
            await conn.execute(insert(I).values(id=instance.instance_id, **values))


async def deregister_instance(write_engine: AsyncEngine, instance_id: str, now: datetime) -> None:
    async with write_engine.begin() as conn:
        await conn.execute(
            update(I).where(I.c.id == instance_id).values(stopped_at=now, heartbeat_at=now)
        )


async def list_instances(engine: AsyncEngine, alive_since: datetime | None) -> list[InstanceInfo]:
    stmt = select(I).order_by(I.c.heartbeat_at.desc())
    if alive_since is not None:
        stmt = stmt.where(I.c.heartbeat_at >= alive_since, I.c.stopped_at.is_(None))
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).mappings().all()
    return [
        InstanceInfo(
            instance_id=r["id"],
            hostname=r["hostname"],
            pid=r["pid"],
            started_at=r["started_at"],
            heartbeat_at=r["heartbeat_at"],
            version=r["version"],
            stopped_at=r["stopped_at"],
        )
        for r in rows
    ]


async def lost_tasks(engine: AsyncEngine, owner: str, held: dict[str, int]) -> set[str]:
    """See ``TaskRepository.lost_tasks``."""
    if not held:
        return set()
    ids = list(held)
    still: dict[str, int] = {}
    async with engine.connect() as conn:
        for start in range(0, len(ids), 500):
            rows = await conn.execute(
                select(T.c.id, T.c.lease_epoch).where(
                    T.c.id.in_(ids[start : start + 500]), T.c.owner == owner
                )
            )
            still.update({row.id: row.lease_epoch for row in rows})
    return {task_id for task_id, epoch in held.items() if still.get(task_id) != epoch}
