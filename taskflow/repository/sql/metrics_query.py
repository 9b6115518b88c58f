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
from taskflow.models import TaskMetrics
from taskflow.repository.histogram import percentile_in_bucket
from taskflow.repository.metrics_fold import TIMED, Tallies, as_float, task_metrics

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


def metrics_from_rows(rows: Iterable[Sequence[Any]]) -> TaskMetrics:
    """Fold the rows of ``metrics_statement`` into ``TaskMetrics``."""
    tallies = Tallies()
    for row in rows:
        kind, status = int(row[0]), row[2]
        tally = tallies[row[1]]
        if kind == P95:
            count, upto, total = int(row[4]), int(row[8]), int(row[9])
            rank = -(-95 * total // 100)
            tally.p95 = percentile_in_bucket(
                int(row[3]), count, as_float(row[6]), as_float(row[7]), upto - count, rank
            )
            continue
        tally.count(status, int(row[3] or 0))
        if status in TIMED:
            tally.timed(int(row[4] or 0), float(row[5] or 0.0), as_float(row[6]), as_float(row[7]))
    return task_metrics(tallies.values())


async def read_metrics(engine: AsyncEngine) -> TaskMetrics:
    """``TaskMetrics`` from the roll-up and the live active counts."""
    async with engine.connect() as conn:
        rows = (await conn.execute(metrics_statement())).all()
    return metrics_from_rows(rows)
