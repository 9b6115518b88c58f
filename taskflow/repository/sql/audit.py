"""The audit log's SQL: append an entry, read entries newest first a page at a time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from taskflow.db.tables import audit_table
from taskflow.models import AuditEntry

A = audit_table


async def append(
    write_engine: AsyncEngine,
    action: str,
    *,
    actor: str,
    task_id: str | None,
    detail: dict[str, Any] | None,
    now: datetime,
) -> AuditEntry:
    """See ``TaskRepository.insert_audit``."""
    async with write_engine.begin() as conn:
        result = await conn.execute(
            insert(A).values(
                action=action, task_id=task_id, actor=actor, detail=detail or None, created_at=now
            )
        )
        key = result.inserted_primary_key
        assert key is not None  # an autoincrement insert always reports its id
        entry_id = int(key[0])
    return AuditEntry(entry_id, action, task_id, actor, now, dict(detail or {}))


async def page(engine: AsyncEngine, limit: int, before: int | None) -> list[AuditEntry]:
    """See ``TaskRepository.list_audit``: the id orders entries as they were written."""
    stmt = select(A).order_by(A.c.id.desc()).limit(limit)
    if before is not None:
        stmt = stmt.where(A.c.id < before)
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).mappings().all()
    return [
        AuditEntry(
            entry_id=int(row["id"]),
            action=row["action"],
            task_id=row["task_id"],
            actor=row["actor"],
            timestamp=row["created_at"],
            detail=dict(row["detail"] or {}),
        )
        for row in rows
    ]
