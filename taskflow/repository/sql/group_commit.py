"""One group commit through the async engine (PostgreSQL, MySQL/MariaDB, in-memory SQLite).

The batch's inserts, guarded updates and log lines are written with the
pre-compiled statements of ``batch.py``, and the tasks the batch finishes
are added to the statistics roll-up (``repository/stats.py``) in the same
transaction, folded into one upsert per (function, status, bucket).

Which updates applied decides what is counted, and the update guard makes
an update of a row that is already finished a no-op (so a batch applied
again after its commit went through counts nothing twice):

* PostgreSQL: the read-back after the updates, which finds the fenced rows
  (as before the roll-up), also asks which rows this transaction wrote
  (``dialects.written_by_this_transaction``): no extra round trip;
* MySQL and SQLite report the executemany's total rowcount: equal to the
  batch size, every update applied and every finishing one is counted.
  When it falls short (some update fenced, or repeating one already
  applied), the attempt is rolled back and applied again the careful way:
  each row's status and epoch read under a row lock first.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from taskflow.db import dialects
from taskflow.db.tables import tasks_table
from taskflow.models import TaskRecord
from taskflow.repository.base import WriteBatch
from taskflow.repository.sql import pg_batch, wakeups
from taskflow.repository.sql.batch import (
    BatchStatements,
    count_finishing_updates,
    finished_insert_rows,
    settle_updates,
)
from taskflow.repository.sql.stats import StatsDelta

T = tasks_table


class _Recount(Exception):
    """The optimistic attempt cannot tell which updates applied: roll it back, go careful."""


async def apply_batch(
    connection: AsyncConnection,
    statements: BatchStatements,
    batch: WriteBatch,
    stripe: int,
    *,
    notify_as: str | None = None,
) -> set[str]:
    """Commit ``batch`` with its roll-up changes on ``connection``; returns the fenced ids.

    ``connection`` has no transaction open; each attempt is one transaction.
    ``notify_as`` (PostgreSQL): also send a change notice in that instance's
    name, delivered by the same commit.
    """
    careful = not dialects.reports_executemany_rowcount(connection.dialect)
    try:
        return await _apply_once(
            connection, statements, batch, stripe, careful=careful, notify_as=notify_as
        )
    except _Recount:
        return await _apply_once(
            connection, statements, batch, stripe, careful=True, notify_as=notify_as
        )


async def apply_in_one_statement(
    connection: AsyncConnection,
    statements: BatchStatements,
    sql: str,
    batch: WriteBatch,
    stripe: int,
    *,
    notify_as: str | None = None,
) -> set[str]:
    """PostgreSQL: commit ``batch`` as ``pg_batch``'s one statement; returns the fenced ids.

    ``connection`` is in autocommit: the statement is its own transaction,
    one round trip.  ``batch`` must fit (``pg_batch.fits_one_statement``).
    ``notify_as``: a change notice follows the commit, as its own statement
    (other instances' dashboards poll as well, so a notice lost with a
    connection that died in between only delays them).
    """
    ordered = sorted(batch.updates, key=lambda r: r.task_id)
    parameters = pg_batch.batch_parameters(statements, batch, ordered, stripe)
    result = await connection.exec_driver_sql(sql, parameters)
    applied = set(result.scalars())
    if notify_as is not None:
        await connection.execute(wakeups.NOTIFY_CHANGES, {"sender": notify_as})
    return {r.task_id for r in ordered if r.task_id not in applied}


async def _apply_once(
    connection: AsyncConnection,
    statements: BatchStatements,
    batch: WriteBatch,
    stripe: int,
    *,
    careful: bool,
    notify_as: str | None,
) -> set[str]:
    delta = StatsDelta()
    fenced: set[str] = set()
    async with connection.begin():
        conn = connection
        if batch.inserts:
            await _insert(conn, statements, batch.inserts, delta)
        if batch.updates:
            fenced = await _update(conn, statements, batch.updates, delta, careful=careful)
        if batch.logs:
            rows = statements.log_rows(batch.logs)
            await conn.exec_driver_sql(statements.insert_log_sql, rows)
        if delta:
            await conn.exec_driver_sql(statements.stats_upsert_sql, delta.rows(stripe))
        if notify_as is not None:
            await conn.execute(wakeups.NOTIFY_CHANGES, {"sender": notify_as})
    return fenced


async def _insert(
    conn: AsyncConnection,
    statements: BatchStatements,
    records: list[TaskRecord],
    delta: StatsDelta,
) -> None:
    rows = statements.task_rows(records)
    finished = finished_insert_rows(records, rows)
    present: set[str] = set()
    if finished:
        # Rare (a task cancelled before its insert committed), so simply ask
        # which of these rows a previous attempt of this batch stored already.
        ids = list(finished)
        present = set((await conn.execute(select(T.c.id).where(T.c.id.in_(ids)))).scalars())
    await conn.exec_driver_sql(statements.insert_task_sql, rows)
    for task_id, (func_name, status, duration_ms) in finished.items():
        if task_id not in present:
            delta.add(func_name, status, duration_ms)


async def _update(
    conn: AsyncConnection,
    statements: BatchStatements,
    records: list[TaskRecord],
    delta: StatsDelta,
    *,
    careful: bool,
) -> set[str]:
    # A fixed lock order keeps two instances' batches from deadlocking.
    ordered = sorted(records, key=lambda r: r.task_id)
    if statements.update_applied_sql is not None:
        return await _update_returning_applied(conn, statements, ordered, delta)
    if not careful:
        rows = statements.update_rows(ordered)
        result = await conn.exec_driver_sql(statements.update_task_sql, rows)
        if result.rowcount != len(rows):
            raise _Recount
        count_finishing_updates(ordered, rows, delta)
        return set()
    written = dialects.written_by_this_transaction(conn.dialect)
    if written is not None:
        return await _update_and_read_back(conn, statements, ordered, delta, written)
    found = await conn.execute(
        select(T.c.id, T.c.status, T.c.lease_epoch)
        .where(T.c.id.in_([r.task_id for r in ordered]))
        .order_by(T.c.id)
        .with_for_update()
    )
    states = {row.id: (row.status, row.lease_epoch) for row in found}
    applying, fenced = settle_updates(ordered, states)
    if applying:
        rows = statements.update_rows(applying)
        count_finishing_updates(applying, rows, delta)
        await conn.exec_driver_sql(statements.update_task_sql, rows)
    return fenced


async def _update_returning_applied(
    conn: AsyncConnection,
    statements: BatchStatements,
    ordered: list[TaskRecord],
    delta: StatsDelta,
) -> set[str]:
    # PostgreSQL: one statement updates and returns the rows it changed.  An
    # update that did not apply is reported fenced: its row moved to another
    # owner or was cancelled (epoch), or it is finished already, which only a
    # batch applied again after its commit went through can meet, and then
    # the task is no longer held, so dropping it changes nothing.
    assert statements.update_applied_sql is not None
    rows = statements.update_rows(ordered)
    result = await conn.exec_driver_sql(
        statements.update_applied_sql, statements.update_arrays(rows)
    )
    applied = set(result.scalars())
    mine = [(r, row) for r, row in zip(ordered, rows, strict=True) if r.task_id in applied]
    count_finishing_updates([r for r, _ in mine], [row for _, row in mine], delta)
    return {r.task_id for r in ordered if r.task_id not in applied}


async def _update_and_read_back(
    conn: AsyncConnection,
    statements: BatchStatements,
    ordered: list[TaskRecord],
    delta: StatsDelta,
    written: Any,
) -> set[str]:
    # PostgreSQL: update, then one read-back that says both which rows are
    # fenced (their epoch moved on) and which this transaction wrote.
    rows = statements.update_rows(ordered)
    await conn.exec_driver_sql(statements.update_task_sql, rows)
    found = await conn.execute(
        select(T.c.id, T.c.lease_epoch, written).where(T.c.id.in_([r.task_id for r in ordered]))
    )
    epochs: dict[str, int] = {}
    mine: set[str] = set()
    for task_id, epoch, by_us in found:
        epochs[task_id] = epoch
        if by_us:
            mine.add(task_id)
    applied = [(r, row) for r, row in zip(ordered, rows, strict=True) if r.task_id in mine]
    count_finishing_updates([r for r, _ in applied], [row for _, row in applied], delta)
    return {r.task_id for r in ordered if epochs.get(r.task_id) != r.lease_epoch}
