"""Reading the metrics: live counts of active tasks plus the statistics roll-up.

``metrics()`` runs one statement that returns a few dozen rows whatever the
size of the history (see ``repository/stats.py`` for how the roll-up is
kept and how precise its durations are), and folds them here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Double, case, cast, func, literal_column, null, select, text, union_all
from sqlalchemy.ext.asyncio import AsyncEngine

from taskflow.db.tables import ACTIVE_ONLY, task_stats_table, tasks_table
from taskflow.models import FunctionMetrics, TaskMetrics, TaskStatus
from taskflow.repository.histogram import percentile as percentile
from taskflow.repository.histogram import percentile_in_bucket
from taskflow.repository.sql.stats import TIMED

S = task_stats_table
T = tasks_table


LIVE, TOTALS, P95 = 0, 1, 2


def _null() -> Any:
    return cast(null(), Double())


def metrics_statement() -> Any:
    """Everything ``metrics()`` needs, in one statement (one snapshot) of a few dozen rows.

    Three kinds of rows, told apart by the first column:

    * ``LIVE``: active tasks per (function, status), counted in the tasks
      table.  The WHERE is the text of the partial index's own predicate, so
      PostgreSQL and SQLite use that small index even with generic plans;
    * ``TOTALS``: per (function, status) from the roll-up, summed over
      stripes: count, timed count, duration sum, min, max;
    * ``P95``: per function, the histogram bucket holding the 95th percentile
      of its finished (success, failed) runs, found with running sums.

    Buckets whose count sums to zero (every task in them deleted) are left
    out of the extremes and the percentile.
    """
    cells = (
        select(
            S.c.func_name,
            S.c.status,
            S.c.bucket,
            func.sum(S.c.task_count).label("n"),
            func.sum(S.c.duration_sum).label("ms"),
            func.min(S.c.duration_min).label("lo"),
            func.max(S.c.duration_max).label("hi"),
        )
        .group_by(S.c.func_name, S.c.status, S.c.bucket)
        .cte("cells")  # read twice below, computed once
    )
    live = (
        select(
            literal_column(str(LIVE)),
            T.c.func_name,
            T.c.status,
            func.count(),
            func.count(),
            _null(),
            _null(),
            _null(),
            _null(),
            _null(),
        )
        .where(text(ACTIVE_ONLY))
        .group_by(T.c.func_name, T.c.status)
    )
    present = cells.c.n > 0
    totals = select(
        literal_column(str(TOTALS)),
        cells.c.func_name,
        cells.c.status,
        func.sum(cells.c.n),
        func.sum(case((cells.c.bucket >= 0, cells.c.n), else_=0)),
        func.sum(cells.c.ms),
        func.min(case((present, cells.c.lo), else_=None)),
        func.max(case((present, cells.c.hi), else_=None)),
        _null(),
        _null(),
    ).group_by(cells.c.func_name, cells.c.status)
    histogram = (
        select(
            cells.c.func_name,
            cells.c.bucket,
            func.sum(cells.c.n).label("n"),
            func.min(cells.c.lo).label("lo"),
            func.max(cells.c.hi).label("hi"),
        )
        .where(cells.c.status.in_(TIMED), cells.c.bucket >= 0, present)
        .group_by(cells.c.func_name, cells.c.bucket)
        .subquery("histogram")
    )
    h = histogram.c
    running = select(
        h.func_name,
        h.bucket,
        h.n,
        h.lo,
        h.hi,
        func.sum(h.n)
        .over(partition_by=h.func_name, order_by=h.bucket, rows=(None, 0))
        .label("upto"),
        func.sum(h.n).over(partition_by=h.func_name).label("total"),
    ).subquery("running")
    r = running.c
    rank_bucket = select(
        literal_column(str(P95)),
        r.func_name,
        literal_column("''"),
        r.bucket,
        r.n,
        _null(),
        r.lo,
        r.hi,
        r.upto,
        r.total,
    ).where(r.upto * 100 >= r.total * 95, (r.upto - r.n) * 100 < r.total * 95)
    return union_all(live, totals, rank_bucket)


class _Function:
    """Per-function accumulation while reading the metrics rows."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts: dict[str, int] = {}
        self.timed_count = 0
        self.timed_sum = 0.0
        self.low: float | None = None
        self.high: float | None = None
        self.p95: float | None = None

    def totals(self, status: str, row: Sequence[Any]) -> None:
        self.counts[status] = self.counts.get(status, 0) + int(row[3] or 0)
        if status not in TIMED:
            return
        self.timed_count += int(row[4] or 0)
        self.timed_sum += float(row[5] or 0.0)
        low, high = _float(row[6]), _float(row[7])
        if low is not None:
            self.low = low if self.low is None else min(self.low, low)
        if high is not None:
            self.high = high if self.high is None else max(self.high, high)

    def result(self) -> FunctionMetrics:
        avg = self.timed_sum / self.timed_count if self.timed_count else None
        return FunctionMetrics(
            func_name=self.name,
            total=sum(self.counts.values()),
            success=self.counts.get(TaskStatus.SUCCESS.value, 0),
            failed=self.counts.get(TaskStatus.FAILED.value, 0),
            running=self.counts.get(TaskStatus.RUNNING.value, 0),
            avg_duration=_seconds(avg),
            min_duration=_seconds(self.low),
            max_duration=_seconds(self.high),
            p95_duration=_seconds(self.p95),
        )


def metrics_from_rows(rows: Iterable[Sequence[Any]]) -> TaskMetrics:
    """Fold the rows of ``metrics_statement`` into ``TaskMetrics``."""
    functions: dict[str, _Function] = {}
    for row in rows:
        kind, func_name, status = int(row[0]), row[1], row[2]
        fn = functions.get(func_name)
        if fn is None:
            fn = functions[func_name] = _Function(func_name)
        if kind == P95:
            count, upto, total = int(row[4]), int(row[8]), int(row[9])
            rank = -(-95 * total // 100)
            fn.p95 = percentile_in_bucket(
                int(row[3]), count, _float(row[6]), _float(row[7]), upto - count, rank
            )
        else:
            fn.totals(status, row)
    counts: dict[str, int] = {}
    for fn in functions.values():
        for status, n in fn.counts.items():
            counts[status] = counts.get(status, 0) + n
    timed_count = sum(f.timed_count for f in functions.values())
    timed_sum = sum(f.timed_sum for f in functions.values())
    return TaskMetrics(
        counts={status: n for status, n in counts.items() if n > 0},
        avg_duration_seconds=_seconds(timed_sum / timed_count) if timed_count else None,
        by_function=[
            functions[name].result()
            for name in sorted(functions)
            if sum(functions[name].counts.values()) > 0
        ],
    )


async def read_metrics(engine: AsyncEngine) -> TaskMetrics:
    """``TaskMetrics`` from the roll-up and the live active counts."""
    async with engine.connect() as conn:
        rows = (await conn.execute(metrics_statement())).all()
    return metrics_from_rows(rows)


def _seconds(ms: float | None) -> float | None:
    return ms / 1000.0 if ms is not None else None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
