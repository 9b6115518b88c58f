"""The SQL of reading tasks for the API and dashboard: one task with its logs, and the list.

``list_tasks()`` reads a page newest first and continues after the cursor's
``(created_at, id)`` rather than at an offset; the filters of ``TaskQuery``
become ``WHERE`` clauses.  A page leaves out the arguments and the stack
trace; ``get_task()`` reads every column.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from taskflow.db.tables import task_logs_table, tasks_table
from taskflow.models import TaskLogEntry, TaskRecord, TaskStatus
from taskflow.repository.cursor import decode_cursor, encode_cursor
from taskflow.repository.sql.mapping import log_from_row, record_from_row, render_logs
from taskflow.repository.values import TaskPage, TaskQuery

T = tasks_table
L = task_logs_table

# Columns a page of the list needs: no payload, no stack trace.
LIST_COLUMNS = [c for c in T.c if c.name not in ("payload", "stacktrace")]


async def get_task(engine: AsyncEngine, task_id: str, with_logs: bool) -> TaskRecord | None:
    """See ``TaskRepository.get_task``."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(T).where(T.c.id == task_id))).mappings().first()
        if row is None:
            return None
        record = record_from_row(row)
        if with_logs:
            entries = await _logs(conn, task_id)
            record.logs = render_logs(entries, record.retries_used)
    return record


async def get_logs(engine: AsyncEngine, task_id: str) -> list[TaskLogEntry]:
    """See ``TaskRepository.get_logs``."""
    async with engine.connect() as conn:
        return await _logs(conn, task_id)


async def _logs(conn: AsyncConnection, task_id: str) -> list[TaskLogEntry]:
    rows = await conn.execute(select(L).where(L.c.task_id == task_id).order_by(L.c.id))
    return [log_from_row(r) for r in rows.mappings()]


async def page(engine: AsyncEngine, query: TaskQuery) -> TaskPage:
    """See ``TaskRepository.list_tasks``."""
    stmt = filtered(select(*LIST_COLUMNS), query)
    if query.cursor:
        created, last_id = decode_cursor(query.cursor)
        stmt = stmt.where(
            or_(T.c.created_at < created, and_(T.c.created_at == created, T.c.id < last_id))
        )
    stmt = stmt.order_by(T.c.created_at.desc(), T.c.id.desc()).limit(query.limit + 1)
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).mappings().all()
    items = [record_from_row(r) for r in rows[: query.limit]]
    next_cursor = None
    if len(rows) > query.limit and items:
        last = items[-1]
        next_cursor = encode_cursor(last.created_at, last.task_id)
    return TaskPage(items=items, next_cursor=next_cursor)


def filtered(stmt: Select[Any], query: TaskQuery) -> Select[Any]:
    """``stmt`` narrowed to the tasks ``query``'s filters select."""
    if query.status:
        stmt = stmt.where(T.c.status.in_([TaskStatus(s).value for s in query.status]))
    if query.func_name:
        stmt = stmt.where(T.c.func_name == query.func_name)
    if query.source:
        stmt = stmt.where(T.c.source == query.source)
    if query.created_since:
        stmt = stmt.where(T.c.created_at >= query.created_since)
    if query.created_until:
        stmt = stmt.where(T.c.created_at < query.created_until)
    if query.search:
        # Case-insensitive on every dialect; % and _ are searched for, not wildcards.
        term = query.search
        stmt = stmt.where(
            or_(
                T.c.id.icontains(term, autoescape=True),
                T.c.func_name.icontains(term, autoescape=True),
            )
        )
    return stmt
