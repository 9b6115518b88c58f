"""Copying failed tasks into new pending rows: the SQL behind retry, bulk retry and replay.

A retry is ``INSERT INTO taskflow_tasks (...) SELECT ... FROM taskflow_tasks
WHERE id = :original``: the database copies the stored arguments (JSON
columns, pickled or encrypted payload) as they are, so they are never
decoded, decrypted or even sent through Python on the way, and an original
deleted in the meantime simply yields no row.  The new rows have no owner:
the dispatchers of every instance claim and run them under their usual
concurrency limits, exactly like rows left by a crashed instance.

``SqlRetries`` gives ``SqlTaskRepository`` its retry methods on top of these
functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, and_, bindparam, insert, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from taskflow.db.tables import tasks_table
from taskflow.db.types import UTCDateTime
from taskflow.models import TaskSource, TaskStatus
from taskflow.repository.base import ReplayPage, RetryCopy, RetrySource

T = tasks_table
REPLAYABLE = (TaskStatus.FAILED.value, TaskStatus.INTERRUPTED.value)
# Copied from the original as stored; everything else starts afresh.
COPIED = (
    "func_name",
    "executor",
    "priority",
    "tags",
    "args",
    "kwargs",
    "payload",
    "payload_format",
)
SOURCE_COLUMNS = (
    T.c.id,
    T.c.func_name,
    T.c.status,
    T.c.payload_format,
    T.c.created_at,
    T.c.retried_from,
)
# IN lists stay well below every driver's parameter limit.
ID_CHUNK = 500


def _source(row: Any) -> RetrySource:
    return RetrySource(
        task_id=row.id,
        func_name=row.func_name,
        status=TaskStatus(row.status),
        payload_format=row.payload_format or "json",
        created_at=row.created_at,
        retried_from=row.retried_from,
    )


def _copy_statement() -> Any:
    """The INSERT ... SELECT run once per copy (executemany) in one transaction."""
    now = bindparam("now", type_=UTCDateTime())
    copied = select(
        bindparam("new_id", type_=T.c.id.type),
        *(T.c[name] for name in COPIED),
        literal(TaskStatus.PENDING.value, T.c.status.type),
        literal(TaskSource.RETRY.value, T.c.source.type),
        bindparam("max_retries", type_=Integer()),
        literal(0, Integer()),
        literal(0, Integer()),
        now,
        now,
        now,
        T.c.id,
    ).where(
        T.c.id == bindparam("original_id"),
        # executemany cannot expand an IN list: spell it as ORs.
        or_(*(T.c.status == status for status in REPLAYABLE)),
    )
    columns = [
        "id",
        *COPIED,
        "status",
        "source",
        "max_retries",
        "attempt",
        "lease_epoch",
        "run_at",
        "created_at",
        "updated_at",
        "retried_from",
    ]
    return insert(T).from_select(columns, copied)


COPY = _copy_statement()


async def sources(engine: AsyncEngine, task_ids: Sequence[str]) -> list[RetrySource]:
    """See ``TaskRepository.retry_sources``."""
    found: list[RetrySource] = []
    async with engine.connect() as conn:
        for chunk in _chunks(task_ids):
            rows = await conn.execute(select(*SOURCE_COLUMNS).where(T.c.id.in_(chunk)))
            found.extend(_source(row) for row in rows)
    return found


def _chunks(task_ids: Sequence[str]) -> list[list[str]]:
    ids = list(dict.fromkeys(task_ids))
    return [ids[start : start + ID_CHUNK] for start in range(0, len(ids), ID_CHUNK)]


async def retried(engine: AsyncEngine, task_ids: Sequence[str]) -> set[str]:
    """See ``TaskRepository.retried_ids``: an index look-up of retries by origin."""
    found: set[str] = set()
    async with engine.connect() as conn:
        for chunk in _chunks(task_ids):
            stmt = select(T.c.retried_from).where(T.c.retried_from.in_(chunk)).distinct()
            found.update((await conn.execute(stmt)).scalars())
    return found


async def origins(engine: AsyncEngine, task_ids: Sequence[str]) -> dict[str, str | None]:
    """See ``TaskRepository.retry_origins``."""
    found: dict[str, str | None] = {}
    async with engine.connect() as conn:
        for chunk in _chunks(task_ids):
            rows = await conn.execute(select(T.c.id, T.c.retried_from).where(T.c.id.in_(chunk)))
            found.update({row.id: row.retried_from for row in rows})
    return found


async def candidates(engine: AsyncEngine, page: ReplayPage) -> list[RetrySource]:
    """See ``TaskRepository.replay_candidates``.

    One status per query, so each page is a range scan of the
    ``(status, created_at)`` or ``(func_name, created_at)`` index rather than
    a sort of every failure.
    """
    stmt = select(*SOURCE_COLUMNS).where(
        T.c.status == page.status.value, T.c.created_at < page.created_before
    )
    if page.created_since is not None:
        stmt = stmt.where(T.c.created_at >= page.created_since)
    if page.func_name is not None:
        stmt = stmt.where(T.c.func_name == page.func_name)
    if (after := page.after) is not None:
        stmt = stmt.where(
            or_(
                T.c.created_at < after.created_at,
                and_(T.c.created_at == after.created_at, T.c.id < after.task_id),
            )
        )
    stmt = stmt.order_by(T.c.created_at.desc(), T.c.id.desc()).limit(page.limit)
    async with engine.connect() as conn:
        return [_source(row) for row in await conn.execute(stmt)]


async def insert_copies(
    write_engine: AsyncEngine, copies: Sequence[RetryCopy], now: datetime
) -> list[RetryCopy]:
    """See ``TaskRepository.insert_retries``."""
    if not copies:
        return []
    params = [
        {
            "new_id": copy.new_task_id,
            "original_id": copy.original_id,
            "max_retries": copy.max_retries,
            "now": now,
        }
        for copy in copies
    ]
    new_ids = [copy.new_task_id for copy in copies]
    async with write_engine.begin() as conn:
        await conn.execute(COPY, params)
        # Not every driver reports an executemany rowcount: read back what exists.
        inserted: set[str] = set()
        for start in range(0, len(new_ids), ID_CHUNK):
            chunk = new_ids[start : start + ID_CHUNK]
            inserted.update((await conn.execute(select(T.c.id).where(T.c.id.in_(chunk)))).scalars())
    return [copy for copy in copies if copy.new_task_id in inserted]


class SqlRetries:
    """The retry methods of ``SqlTaskRepository`` (``TaskRepository``'s retries)."""

    # Set by SqlTaskRepository.__init__: reads go to ``engine``, writes to
    # ``write_engine`` (on SQLite, opened with BEGIN IMMEDIATE).
    engine: AsyncEngine
    write_engine: AsyncEngine

    async def retry_sources(self, task_ids: Sequence[str]) -> list[RetrySource]:
        return await sources(self.engine, task_ids)

    async def replay_candidates(self, page: ReplayPage) -> list[RetrySource]:
        return await candidates(self.engine, page)

    async def retried_ids(self, task_ids: Sequence[str]) -> set[str]:
        return await retried(self.engine, task_ids)

    async def retry_origins(self, task_ids: Sequence[str]) -> dict[str, str | None]:
        return await origins(self.engine, task_ids)

    async def insert_retries(
        self, copies: Sequence[RetryCopy], *, now: datetime
    ) -> list[RetryCopy]:
        return await insert_copies(self.write_engine, copies, now)
