"""Tasks created inside the caller's own SQLAlchemy transaction.

The row is added through the caller's ``Session`` / ``AsyncSession``, so the
task exists exactly when their transaction commits: a rollback leaves no
task, a commit makes it claimable by any instance (the row has no owner).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from taskflow.db import dialects
from taskflow.db.tables import tasks_table
from taskflow.exceptions import TaskArgumentError
from taskflow.models import TaskRecord
from taskflow.repository.sql import idempotency, wakeups
from taskflow.repository.sql.mapping import insert_params


def _on_commit(session: Session, wake: Callable[[], None]) -> None:
    def committed(_session: Session) -> None:
        wake()

    event.listen(session, "after_commit", committed, once=True)


async def add_to_async_session(
    session: AsyncSession, record: TaskRecord, wake: Callable[[], None]
) -> str:
    """Insert ``record`` in the session's transaction; returns the id holding its key."""
    conn = await session.connection()
    winner = record.task_id
    if record.idempotency_key is not None:
        settled = await idempotency.settle(conn, record.idempotency_key, record)
        if settled is None:
            raise TaskArgumentError(
                f"idempotency key {record.idempotency_key!r} is changing hands; try again"
            )
        winner = settled
    else:
        await conn.execute(insert(tasks_table).values(insert_params(record)))
    if dialects.is_postgresql(conn.dialect):
        await wakeups.notify(conn)  # other instances hear it when the caller commits
    _on_commit(session.sync_session, wake)
    return winner


def add_to_session(session: Session, record: TaskRecord, wake: Callable[[], None]) -> str:
    """Insert ``record`` in a synchronous session's transaction; returns its id."""
    if record.idempotency_key is not None:
        raise TaskArgumentError(
            "idempotency_key with a synchronous Session is not supported: use an "
            "AsyncSession with await task_manager.enqueue(..., session=...)"
        )
    session.execute(insert(tasks_table).values(insert_params(record)))
    if dialects.is_postgresql(session.get_bind().dialect):
        session.execute(wakeups.NOTIFY)
    _on_commit(session, wake)
    return record.task_id


def is_async_session(session: Any) -> bool:
    return isinstance(session, AsyncSession)


def is_session(session: Any) -> bool:
    return isinstance(session, Session)
