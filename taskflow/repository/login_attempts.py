"""The SQL of the login throttle: one row per login attempt that has not succeeded.

Counting rows in the database, rather than in each process, makes the limit
hold for the whole deployment.  An attempt is committed before its password is
checked, and then ranked: it counts the client's attempts in the window up
to and including its own id, on any number of instances.  On SQLite, where
writers take turns, exactly the first five of twenty concurrent guesses go on
to a password check.  On PostgreSQL and MySQL an id can become visible after
a higher one, so a burst racing within the same milliseconds may get one or
two more.  A success deletes the client's rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from taskflow.db.tables import login_attempts_table
from taskflow.repository.base import LoginAttempts

L = login_attempts_table


async def begin(
    write_engine: AsyncEngine, client: str, now: datetime, since: datetime
) -> LoginAttempts:
    """Record an attempt; return it with its rank among the client's attempts after ``since``."""
    async with write_engine.begin() as conn:
        inserted = await conn.execute(insert(L).values(client=client, attempted_at=now))
        key = inserted.inserted_primary_key
        assert key is not None
        attempt_id = int(key[0])
    async with write_engine.connect() as conn:
        count, oldest = (
            await conn.execute(
                select(func.count(), func.min(L.c.attempted_at)).where(
                    L.c.client == client, L.c.attempted_at > since, L.c.id <= attempt_id
                )
            )
        ).one()
    return LoginAttempts(attempt_id=attempt_id, count=int(count), oldest=oldest)


async def forget(write_engine: AsyncEngine, attempt_id: int) -> None:
    """Remove one attempt (a refused one: it never reached the password check)."""
    async with write_engine.begin() as conn:
        await conn.execute(delete(L).where(L.c.id == attempt_id))


async def clear(write_engine: AsyncEngine, client: str) -> None:
    """Remove every attempt of the client (it has just logged in)."""
    async with write_engine.begin() as conn:
        await conn.execute(delete(L).where(L.c.client == client))


async def purge(write_engine: AsyncEngine, before: datetime) -> int:
    """Delete attempts older than any window that could still count them."""
    async with write_engine.begin() as conn:
        result = await conn.execute(delete(L).where(L.c.attempted_at <= before))
    return int(result.rowcount or 0)
