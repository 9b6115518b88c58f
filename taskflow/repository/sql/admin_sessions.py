"""The SQL of dashboard logins: one row per session in ``taskflow_admin_sessions``.

The row's id is a digest of the cookie's token, never the token itself, so a
copy of the table (a backup, a read replica, a leaked dump) lets nobody log
in.  Validity is decided in the query (not expired, not revoked), so every
instance agrees on it without sharing anything but the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from taskflow.db.tables import admin_sessions_table
from taskflow.repository.base import AdminSession

A = admin_sessions_table


def _from_row(row: Mapping[Any, Any]) -> AdminSession:
    return AdminSession(
        session_id=row["id"],
        username=row["username"],
        role=row["role"],
        csrf_token=row["csrf_token"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )


async def create(write_engine: AsyncEngine, session: AdminSession) -> None:
    """Insert a new session row."""
    async with write_engine.begin() as conn:
        await conn.execute(
            insert(A).values(
                id=session.session_id,
                username=session.username,
                role=session.role,
                csrf_token=session.csrf_token,
                created_at=session.created_at,
                expires_at=session.expires_at,
                revoked_at=session.revoked_at,
            )
        )


async def get_valid(engine: AsyncEngine, session_id: str, now: datetime) -> AdminSession | None:
    """The session with that id if it has neither expired nor been revoked."""
    stmt = select(A).where(A.c.id == session_id, A.c.expires_at > now, A.c.revoked_at.is_(None))
    async with engine.connect() as conn:
        row = (await conn.execute(stmt)).mappings().first()
    return _from_row(row) if row is not None else None


async def revoke(write_engine: AsyncEngine, session_id: str, now: datetime) -> bool:
    """Mark the session revoked; False when it did not exist or was already revoked."""
    stmt = update(A).where(A.c.id == session_id, A.c.revoked_at.is_(None)).values(revoked_at=now)
    async with write_engine.begin() as conn:
        result = await conn.execute(stmt)
    return bool(result.rowcount == 1)


async def purge_expired(write_engine: AsyncEngine, now: datetime) -> int:
    """Delete sessions past their expiry (revoked or not): they can never be used again."""
    async with write_engine.begin() as conn:
        result = await conn.execute(delete(A).where(A.c.expires_at <= now))
    return int(result.rowcount or 0)
