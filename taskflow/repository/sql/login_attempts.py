"""The SQL of the login throttle: one row per login attempt that has not succeeded.

Counting rows in the database, rather than in each process, makes the limit
hold for the whole deployment.  An attempt is committed before its password is
checked, and then ranked: it counts the attempts in the window up to and
including its own id, on any number of instances.  On SQLite, where writers
take turns, exactly the first five of twenty concurrent guesses go on to a
password check.  On PostgreSQL and MySQL an id can become visible after a
higher one, so a burst racing within the same milliseconds may get one or two
more.

Each row's key is the client's digest followed by the user name's digest
(``KEY_PART`` hex characters each), so one indexed column counts both the
attempts on one account from one client (equality) and every attempt from
the client (the range of keys that start with its digest).  A success deletes
the rows of that client and that user only: logging in as one user never
forgives guesses at another's password.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from taskflow.db.tables import login_attempts_table
from taskflow.repository.base import LoginAttempts

L = login_attempts_table
# Hex characters of each half of the key; the column holds 64.
KEY_PART = 32


def _key(client: str, user: str) -> str:
    if len(client) != KEY_PART or len(user) != KEY_PART:
        raise ValueError(f"client and user are digests of {KEY_PART} hex characters")
    return client + user


def _of_client(client: str) -> ColumnElement[bool]:
    # Every key starting with the client's digest: an index range on any
    # collation, since hex digits sort alike in all of them.
    return L.c.client.between(client + "0" * KEY_PART, client + "f" * KEY_PART)


async def _rank(
    conn: AsyncConnection, where: ColumnElement[bool], since: datetime, attempt_id: int
) -> Any:
    return (
        await conn.execute(
            select(func.count(), func.min(L.c.attempted_at)).where(
                where, L.c.attempted_at > since, L.c.id <= attempt_id
            )
        )
    ).one()


async def begin(
    write_engine: AsyncEngine, client: str, user: str, now: datetime, since: datetime
) -> LoginAttempts:
    """Record an attempt; rank it among the attempts after ``since`` on the account and client."""
    key = _key(client, user)
    async with write_engine.begin() as conn:
        inserted = await conn.execute(insert(L).values(client=key, attempted_at=now))
        primary_key = inserted.inserted_primary_key
        assert primary_key is not None
        attempt_id = int(primary_key[0])
    async with write_engine.connect() as conn:
        count, oldest = await _rank(conn, L.c.client == key, since, attempt_id)
        client_count, client_oldest = await _rank(conn, _of_client(client), since, attempt_id)
    return LoginAttempts(
        attempt_id=attempt_id,
        count=int(count),
        oldest=oldest,
        client_count=int(client_count),
        client_oldest=client_oldest,
    )


async def forget(write_engine: AsyncEngine, attempt_id: int) -> None:
    """Remove one attempt (a refused one: it never reached the password check)."""
    async with write_engine.begin() as conn:
        await conn.execute(delete(L).where(L.c.id == attempt_id))


async def clear(write_engine: AsyncEngine, client: str, user: str) -> None:
    """Remove the attempts of the client on this user's account (it has just logged in)."""
    async with write_engine.begin() as conn:
        await conn.execute(delete(L).where(L.c.client == _key(client, user)))


async def purge(write_engine: AsyncEngine, before: datetime) -> int:
    """Delete attempts older than any window that could still count them."""
    async with write_engine.begin() as conn:
        result = await conn.execute(delete(L).where(L.c.attempted_at <= before))
    return int(result.rowcount or 0)
