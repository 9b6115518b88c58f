"""The task statistics roll-up: counts and duration histograms of finished tasks.

``/tasks/metrics`` must stay fast however much history accumulates, so it
never scans ``taskflow_tasks``.  Every transaction that makes tasks finished
(or deletes finished ones) also adds (or subtracts) them in
``taskflow_task_stats``: one row per (function, status, duration bucket,
stripe) with a count, a duration sum and the smallest and largest duration
seen.  A group commit folds all its tasks into a few upserts.  Pending and
running tasks are not rolled up: they are few, and counted live through the
partial index on active rows.

Buckets are log-linear, 16 per doubling of ``duration_ms`` (the exponent and
the top four bits of the mantissa, as in HDR histograms): computed exactly
from the float, never through a logarithm, so every writer and
``rebuild_stats`` put a duration in the same bucket (the bucketing and the
percentile are every backend's, in ``repository/histogram.py``).  A bucket
spans at most 1/16 of its lower bound.  Precision of what is read back:

* counts, success rates and averages are exact;
* min and max are exact, except after deletions: a bucket keeps the extremes
  it has seen, so once its extreme task is deleted they are a bound within
  that bucket (1/16 of the value) rather than a value still present;
* p95 is the nearest-rank percentile over the histogram (read in
  ``metrics_query.py``).  When the rank is the first or last task of its
  bucket, it is that bucket's min or max (exact); otherwise the middle of
  the bucket's [min, max], within half a bucket of the true value: less
  than ``P95_RELATIVE_ERROR`` (1/32).

``stripe`` spreads concurrent instances over separate rows, so their commits
never queue behind one hot counter row; reads sum over stripes.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from taskflow.db import dialects
from taskflow.db.tables import task_stats_table, tasks_table
from taskflow.models import TERMINAL_STATUSES, TaskRecord, TaskStatus

# The histogram is backend-neutral; these names stay importable from here.
from taskflow.repository.histogram import BUCKETS_PER_DOUBLING as BUCKETS_PER_DOUBLING
from taskflow.repository.histogram import NO_DURATION as NO_DURATION
from taskflow.repository.histogram import P95_RELATIVE_ERROR as P95_RELATIVE_ERROR
from taskflow.repository.histogram import TIMED as TIMED
from taskflow.repository.histogram import bucket_bounds as bucket_bounds
from taskflow.repository.histogram import bucket_of as bucket_of

S = task_stats_table
T = tasks_table

STRIPES = 8
TERMINAL = frozenset(status.value for status in TERMINAL_STATUSES)
ACTIVE = (TaskStatus.PENDING.value, TaskStatus.RUNNING.value)
KEY_COLUMNS = ("func_name", "status", "bucket", "stripe")
ROW_COLUMNS = (*KEY_COLUMNS, "task_count", "duration_sum", "duration_min", "duration_max")

StatsRow = tuple[str, str, int, int, int, float, float | None, float | None]


def stripe_for(instance_id: str) -> int:
    """The stripe of an instance: stable for its id, spread over ``STRIPES``."""
    return zlib.crc32(instance_id.encode()) % STRIPES


class StatsDelta:
    """Changes to the roll-up made by one transaction, folded per (function, status, bucket)."""

    __slots__ = ("_cells",)

    def __init__(self) -> None:
        self._cells: dict[tuple[str, str, int], list[Any]] = {}

    def __bool__(self) -> bool:
        return bool(self._cells)

    def add(self, func_name: str, status: str, duration_ms: float | None, sign: int = 1) -> None:
        """Count one finished task (``sign=1``) or uncount a deleted one (``sign=-1``)."""
        bucket = bucket_of(duration_ms)
        ms = float(duration_ms) if bucket != NO_DURATION and duration_ms is not None else None
        # A subtraction leaves the extremes alone (NULL keeps the stored value).
        extreme = ms if sign > 0 else None
        key = (func_name, status, bucket)
        cell = self._cells.get(key)
        if cell is None:
            self._cells[key] = [sign, sign * (ms or 0.0), extreme, extreme]
            return
        cell[0] += sign
        cell[1] += sign * (ms or 0.0)
        if extreme is not None:
            cell[2] = extreme if cell[2] is None else min(cell[2], extreme)
            cell[3] = extreme if cell[3] is None else max(cell[3], extreme)

    def add_record(self, record: TaskRecord) -> None:
        """Count a task as it is written now (it must be finished)."""
        self.add(record.func_name, record.status.value, record.duration_ms)

    def rows(self, stripe: int) -> list[StatsRow]:
        """Upsert rows in key order: concurrent writers lock counter rows in one order."""
        return [
            (func_name, status, bucket, stripe, count, total, low, high)
            for (func_name, status, bucket), (count, total, low, high) in sorted(
                self._cells.items()
            )
            if count != 0 or low is not None
        ]


def upsert_statement(dialect: Any) -> Any:
    """The roll-up's upsert for ``dialect``: counts and sums add up, extremes widen."""
    return dialects.upsert_adding(
        dialect,
        S,
        keys=KEY_COLUMNS,
        added=("task_count", "duration_sum"),
        least=("duration_min",),
        greatest=("duration_max",),
    )


async def apply_delta(conn: AsyncConnection, delta: StatsDelta, stripe: int) -> None:
    """Write ``delta`` to the roll-up in ``conn``'s transaction (single transitions, deletions)."""
    rows = delta.rows(stripe)
    if not rows:
        return
    params = [dict(zip(ROW_COLUMNS, row, strict=True)) for row in rows]
    await conn.execute(upsert_statement(conn.dialect), params)
    emptied = [p for p, row in zip(params, rows, strict=True) if row[4] < 0]
    if emptied:
        # Counter rows a deletion brought to zero go, so the table does not
        # keep a row for every bucket ever used.
        await conn.execute(
            delete(S).where(
                *(S.c[name] == bindparam(f"k_{name}") for name in KEY_COLUMNS), S.c.task_count == 0
            ),
            [{f"k_{name}": p[name] for name in KEY_COLUMNS} for p in emptied],
        )


# -- rebuilding ------------------------------------------------------------------------

REBUILD_CHUNK = 10_000


def rebuild_on_connection(conn: Connection) -> int:
    """Recompute the roll-up from ``taskflow_tasks`` in ``conn``'s transaction.

    Writers that would change the roll-up wait until the transaction ends
    (see ``dialects.block_writers_sql``), so nothing committed meanwhile is
    lost or counted twice.  Everything lands in stripe 0.  Returns the
    number of finished tasks counted.
    """
    lock = dialects.block_writers_sql(conn.dialect, S.name)
    if lock is not None:
        conn.exec_driver_sql(lock)
    conn.execute(delete(S))
    delta = StatsDelta()
    counted = 0
    query = select(T.c.func_name, T.c.status, T.c.duration_ms).where(
        T.c.status.in_(sorted(TERMINAL))
    )
    # Per statement: Connection.execution_options() would change the caller's connection.
    result = conn.execute(query, execution_options={"yield_per": REBUILD_CHUNK})
    for func_name, status, duration_ms in result:
        delta.add(func_name, status, duration_ms)
        counted += 1
    rows = delta.rows(0)
    insert = S.insert()
    for start in range(0, len(rows), REBUILD_CHUNK):
        chunk = rows[start : start + REBUILD_CHUNK]
        conn.execute(insert, [dict(zip(ROW_COLUMNS, row, strict=True)) for row in chunk])
    return counted


async def rebuild_stats(write_engine: AsyncEngine) -> int:
    """Recompute ``taskflow_task_stats`` from every finished task; returns how many were counted.

    For databases whose history was edited with plain SQL (rows deleted or
    changed by hand): the roll-up is kept current only by taskflow's own writes.
    Pass the repository's write engine (``BEGIN IMMEDIATE`` on SQLite).
    """
    async with write_engine.begin() as conn:
        return await conn.run_sync(rebuild_on_connection)


# -- single transitions ----------------------------------------------------------------


def touches_rollup(status: TaskStatus, expected: Sequence[TaskStatus]) -> bool:
    """Whether a transition from one of ``expected`` to ``status`` can change the roll-up."""
    return status.is_terminal or any(s.is_terminal for s in expected)


async def lock_row(conn: AsyncConnection, task_id: str) -> tuple[str, str, float | None] | None:
    """A task's (func_name, status, duration_ms), locked until the transaction ends."""
    row = (
        await conn.execute(
            select(T.c.func_name, T.c.status, T.c.duration_ms)
            .where(T.c.id == task_id)
            .with_for_update()
        )
    ).first()
    return None if row is None else (row[0], row[1], row[2])


def moved(before: tuple[str, str, float | None], status: str) -> StatsDelta:
    """The roll-up change of one task moving from its ``before`` state to ``status``."""
    func_name, old_status, duration_ms = before
    delta = StatsDelta()
    if old_status in TERMINAL:
        delta.add(func_name, old_status, duration_ms, -1)
    if status in TERMINAL:
        delta.add(func_name, status, duration_ms)
    return delta
