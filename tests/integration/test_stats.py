"""The statistics roll-up behind ``/tasks/metrics``, on SQLite, PostgreSQL and MySQL.

The invariant: summed over stripes, ``taskflow_task_stats`` equals an
aggregate of ``taskflow_tasks`` over finished rows, after every write path
that finishes or deletes tasks (group commits, retried batches, cancels,
recovery, shutdown, retention, two writers at once).  ``rollup_matches``
checks it against a full-table aggregate computed in Python.
"""

from __future__ import annotations

import asyncio
import math
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from taskflow import TaskManager
from taskflow.context import get_task_context
from taskflow.db import migrate
from taskflow.db.engine import create_engine_for
from taskflow.db.tables import task_logs_table as L
from taskflow.db.tables import task_stats_table as S
from taskflow.db.tables import tasks_table as T
from taskflow.ids import new_task_id
from taskflow.models import TaskLogEntry, TaskRecord, TaskStatus, utcnow
from taskflow.repository.base import WriteBatch
from taskflow.repository.histogram import percentile
from taskflow.repository.sql import SqlTaskRepository
from taskflow.repository.sql.stats import (
    P95_RELATIVE_ERROR,
    bucket_bounds,
    bucket_of,
    rebuild_stats,
)
from taskflow.settings import resolve_database_url

Cells = dict[tuple[str, str, int], tuple[int, float, float | None, float | None]]


# -- the histogram, without a database ---------------------------------------------------


def test_buckets_are_ordered_and_narrow() -> None:
    rng = random.Random(7)
    values = [0.0, 1e-9, 2**-10, 0.001, 0.5, 1.0, 1.5, 2.0, 1e3, 123456.789, 3.6e6, 1e12]
    values += [math.exp(rng.uniform(-8, 25)) for _ in range(5000)]
    previous = -1
    for ms in sorted(values):
        bucket = bucket_of(ms)
        assert bucket >= previous  # monotonic in the duration
        previous = bucket
        low, high = bucket_bounds(bucket)
        assert low <= ms < high or (bucket == 0 and ms < high)
        if bucket > 0:
            assert (high - low) / low <= 1 / 16 + 1e-12
    assert bucket_of(None) == -1
    assert bucket_of(float("nan")) == -1
    assert bucket_of(-3.0) == 0


def test_percentile_is_within_half_a_bucket() -> None:
    rng = random.Random(11)
    for size in (1, 2, 3, 19, 20, 21, 100, 999, 5000):
        durations = [math.exp(rng.uniform(0, 12)) for _ in range(size)]
        cells: dict[int, list[Any]] = {}
        for ms in durations:
            cell = cells.setdefault(bucket_of(ms), [0, None, None])
            cell[0] += 1
            cell[1] = ms if cell[1] is None else min(cell[1], ms)
            cell[2] = ms if cell[2] is None else max(cell[2], ms)
        ordered = sorted(durations)
        exact = ordered[-(-95 * size // 100) - 1]
        got = percentile(sorted(cells.items()), 95)
        assert got == pytest.approx(exact, rel=P95_RELATIVE_ERROR), size


# -- helpers ----------------------------------------------------------------------------


async def rollup(engine: AsyncEngine) -> Cells:
    """The roll-up summed over stripes, without empty cells."""
    stmt = select(
        S.c.func_name,
        S.c.status,
        S.c.bucket,
        func.sum(S.c.task_count),
        func.sum(S.c.duration_sum),
        func.min(S.c.duration_min),
        func.max(S.c.duration_max),
    ).group_by(S.c.func_name, S.c.status, S.c.bucket)
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return {
        (r[0], r[1], int(r[2])): (int(r[3]), float(r[4]), r[5], r[6]) for r in rows if int(r[3])
    }


async def full_aggregate(engine: AsyncEngine) -> Cells:
    """What the roll-up must hold: every finished row of the tasks table, bucketed."""
    cells: dict[tuple[str, str, int], list[Any]] = {}
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(T.c.func_name, T.c.status, T.c.duration_ms).where(
                T.c.status.in_(["success", "failed", "interrupted", "cancelled"])
            )
        )
        for func_name, status, ms in rows:
            bucket = bucket_of(ms)
            cell = cells.setdefault((func_name, status, bucket), [0, 0.0, None, None])
            cell[0] += 1
            if bucket >= 0:
                cell[1] += ms
                cell[2] = ms if cell[2] is None else min(cell[2], ms)
                cell[3] = ms if cell[3] is None else max(cell[3], ms)
    return {key: (c[0], c[1], c[2], c[3]) for key, c in cells.items()}


async def rollup_matches(engine: AsyncEngine, *, exact_extremes: bool = True) -> Cells:
    """Assert the roll-up equals the full-table aggregate; return it."""
    got, want = await rollup(engine), await full_aggregate(engine)
    assert {k: v[0] for k, v in got.items()} == {k: v[0] for k, v in want.items()}
    for key, (_count, total, low, high) in want.items():
        _g_count, g_total, g_low, g_high = got[key]
        assert g_total == pytest.approx(total, rel=1e-9, abs=1e-6), key
        if exact_extremes:
            assert (g_low, g_high) == (pytest.approx(low), pytest.approx(high)), key
        elif low is not None:
            # After deletions the extremes are bounds within the bucket.
            lower, upper = bucket_bounds(key[2])
            assert lower <= g_low <= low and high <= g_high < upper, key
    return got


def task(n: int, status: TaskStatus, func_name: str = "job", **fields: Any) -> TaskRecord:
    moment = utcnow() - timedelta(days=fields.pop("days", 0))
    values: dict[str, Any] = {
        "task_id": new_task_id(),
        "func_name": func_name,
        "status": status,
        "created_at": moment,
        "run_at": moment,
        "updated_at": moment,
        "lease_epoch": 1,
        "owner": "instance-a" if not status.is_terminal else None,
    }
    if status.is_terminal:
        values["end_time"] = moment
        values["duration_ms"] = 10.0 + n * 1.5
    values.update(fields)
    return TaskRecord(**values)


def finished(record: TaskRecord, status: TaskStatus, duration_ms: float | None) -> TaskRecord:
    from dataclasses import replace

    return replace(
        record,
        status=status,
        duration_ms=duration_ms,
        end_time=utcnow(),
        owner=None,
        lease_expires_at=None,
    )


@pytest.fixture
async def repo(engine: AsyncEngine) -> AsyncIterator[SqlTaskRepository]:
    repository = SqlTaskRepository(engine, stats_stripe=3)
    yield repository
    await repository.release()


# -- the write paths --------------------------------------------------------------------


async def test_group_commit_counts_what_applied(
    repo: SqlTaskRepository, engine: AsyncEngine
) -> None:
    running = [task(n, TaskStatus.RUNNING) for n in range(40)]
    await repo.apply(WriteBatch(inserts=running))
    assert await rollup(engine) == {}
    outcomes = [TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.INTERRUPTED]
    updates = [
        finished(r, outcomes[n % 4], None if n % 7 == 0 else 3.0 * n + 0.25)
        for n, r in enumerate(running[:30])
    ]
    # Three of them are fenced: their lease moved on before the batch landed.
    for r in updates[:3]:
        r.lease_epoch = 0
    # Retries: back to pending, not finished, not counted.
    retried = [finished(r, TaskStatus.PENDING, 5.0) for r in running[30:]]
    outcome = await repo.apply(WriteBatch(updates=updates + retried))
    assert outcome.fenced == frozenset(r.task_id for r in updates[:3])
    cells = await rollup_matches(engine)
    assert sum(c[0] for c in cells.values()) == 27

    # The same batch again (its commit went through but the reply was lost):
    # the rows are finished already, so nothing is counted twice.
    for r in updates[:3]:
        r.lease_epoch = 1
    await repo.apply(WriteBatch(updates=updates))
    cells = await rollup_matches(engine)
    assert sum(c[0] for c in cells.values()) == 30


async def test_one_batch_of_new_rows_changes_and_log_lines(
    repo: SqlTaskRepository, engine: AsyncEngine
) -> None:
    # On PostgreSQL this batch is one statement (repository/sql/pg_batch.py): what
    # stores, counts and reports fenced must equal the multi-statement path.
    running = [task(n, TaskStatus.RUNNING, func_name=f"f{n % 3}") for n in range(12)]
    await repo.apply(WriteBatch(inserts=running))
    durations = [None, 33.0, 0.0, 1e-7, 2.5, 1e9]
    updates = [
        finished(r, TaskStatus.SUCCESS if n % 2 else TaskStatus.FAILED, durations[n % 6])
        for n, r in enumerate(running[:10])
    ]
    updates[0].lease_epoch = 7  # fenced: its lease moved on
    new_rows = [task(n, TaskStatus.PENDING) for n in range(5)]
    lines = [
        TaskLogEntry(r.task_id, 0, "info", f"line {n}", utcnow(), {"n": n})
        for n, r in enumerate(running[:4])
    ]
    outcome = await repo.apply(WriteBatch(inserts=new_rows, updates=updates, logs=lines))
    assert outcome.fenced == frozenset({updates[0].task_id})
    cells = await rollup_matches(engine)
    assert sum(c[0] for c in cells.values()) == 9
    async with engine.connect() as conn:
        stored = dict((await conn.execute(select(T.c.id, T.c.status))).all())
        logged = (await conn.execute(select(func.count()).select_from(L))).scalar_one()
    assert all(stored[r.task_id] == "pending" for r in new_rows)
    assert stored[updates[0].task_id] == "running"
    assert logged == 4


async def test_finished_inserts_count_once(repo: SqlTaskRepository, engine: AsyncEngine) -> None:
    # A task cancelled before its insert was committed is inserted finished.
    rows = [task(n, TaskStatus.CANCELLED, duration_ms=None) for n in range(3)]
    rows += [task(n, TaskStatus.SUCCESS) for n in range(5)]
    await repo.apply(WriteBatch(inserts=rows))
    await repo.apply(WriteBatch(inserts=rows))  # a retried batch: rows already there
    cells = await rollup_matches(engine)
    assert cells[("job", "cancelled", -1)][0] == 3
    assert sum(c[0] for c in cells.values()) == 8


async def test_transitions_cancel_and_recount(repo: SqlTaskRepository, engine: AsyncEngine) -> None:
    pending, running, done = (
        task(1, TaskStatus.PENDING),
        task(2, TaskStatus.RUNNING),
        task(3, TaskStatus.SUCCESS),
    )
    await repo.apply(WriteBatch(inserts=[pending, running, done]))
    active = [TaskStatus.PENDING, TaskStatus.RUNNING]
    for record in (pending, running):
        assert await repo.transition(
            record.task_id,
            expected_status=active,
            expected_epoch=None,
            status=TaskStatus.CANCELLED,
            error="cancelled",
        )
    # A finished task cannot be cancelled: nothing changes, nothing counted.
    assert not await repo.transition(
        done.task_id, expected_status=active, expected_epoch=None, status=TaskStatus.CANCELLED
    )
    cells = await rollup_matches(engine)
    assert cells[("job", "cancelled", -1)][0] == 2
    # A transition out of a finished status (e.g. an operator's reset) uncounts it.
    assert await repo.transition(
        done.task_id,
        expected_status=[TaskStatus.SUCCESS],
        expected_epoch=None,
        status=TaskStatus.PENDING,
    )
    cells = await rollup_matches(engine)
    assert ("job", "success", bucket_of(done.duration_ms)) not in cells


async def test_retention_and_history_deletion(repo: SqlTaskRepository, engine: AsyncEngine) -> None:
    old = [task(n, s, days=10) for n, s in enumerate(list(TaskStatus) * 5)]
    new = [task(n, TaskStatus.SUCCESS, days=0.1) for n in range(7)]
    await repo.apply(WriteBatch(inserts=old + new))
    await rollup_matches(engine)
    deleted = await repo.delete_finished_before(utcnow() - timedelta(days=1), batch=3)
    assert deleted == 20  # the 10 pending/running old rows stay
    cells = await rollup_matches(engine, exact_extremes=False)
    assert sum(c[0] for c in cells.values()) == 7
    assert await repo.delete_finished_before(utcnow() + timedelta(days=1)) == 7
    assert await rollup_matches(engine) == {}
    metrics = await repo.metrics()
    assert metrics.counts == {"pending": 5, "running": 5}
    # Emptied counter rows are removed, not kept at zero.
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).where(S.c.task_count == 0)) == 0


async def test_two_writers_on_different_stripes(engine: AsyncEngine) -> None:
    first = SqlTaskRepository(engine, stats_stripe=1)
    second = SqlTaskRepository(engine, stats_stripe=2)
    try:
        rows = [task(n, TaskStatus.RUNNING, func_name=f"f{n % 3}") for n in range(240)]
        await first.apply(WriteBatch(inserts=rows))
        # Both finish every task at once, in many small batches: every task is
        # counted once, by whichever writer applied it; the other is a no-op.
        done = [finished(r, TaskStatus.SUCCESS, 2.0 + (n % 50) * 0.75) for n, r in enumerate(rows)]

        async def writer(repository: SqlTaskRepository, order: list[TaskRecord]) -> None:
            for start in range(0, len(order), 20):
                await repository.apply(WriteBatch(updates=order[start : start + 20]))

        await asyncio.gather(writer(first, done), writer(second, list(reversed(done))))
        cells = await rollup_matches(engine)
        assert sum(c[0] for c in cells.values()) == 240
        async with engine.connect() as conn:
            stripes = set((await conn.execute(select(S.c.stripe).distinct())).scalars())
        assert stripes <= {1, 2} and stripes
    finally:
        for repository in (first, second):
            await repository.release()


async def test_metrics_read_the_rollup(repo: SqlTaskRepository, engine: AsyncEngine) -> None:
    rows = [task(n, TaskStatus.SUCCESS) for n in range(50)]
    rows += [task(n, TaskStatus.FAILED) for n in range(10)]
    rows += [task(0, TaskStatus.RUNNING), task(0, TaskStatus.PENDING)]
    await repo.apply(WriteBatch(inserts=rows))
    # Rows removed behind taskflow's back: the metrics do not scan the table...
    async with engine.begin() as conn:
        await conn.execute(delete(T).where(T.c.status == "failed"))
    stale = await repo.metrics()
    assert stale.counts == {"success": 50, "failed": 10, "running": 1, "pending": 1}
    # ...until the roll-up is rebuilt from it.
    assert await repo.rebuild_stats() == 50
    fresh = await repo.metrics()
    assert fresh.counts == {"success": 50, "running": 1, "pending": 1}
    (fm,) = fresh.by_function
    assert (fm.total, fm.success, fm.failed, fm.running) == (52, 50, 0, 1)
    assert fm.min_duration == pytest.approx(0.010)
    assert fm.max_duration == pytest.approx((10.0 + 49 * 1.5) / 1000)
    await rollup_matches(engine)


async def count_active(engine: AsyncEngine, exclude: list[str]) -> int:
    async with engine.connect() as conn:
        return int(
            await conn.scalar(
                select(func.count()).where(
                    T.c.status.in_(["pending", "running"]), T.c.id.not_in(exclude)
                )
            )
            or 0
        )


async def test_manager_outcomes_retries_cancels_and_shutdown(
    schema_db_url: str, engine: AsyncEngine
) -> None:
    release = asyncio.Event()

    async def ok(n: int) -> int:
        await asyncio.sleep(0.001 * (n % 5))
        return n

    async def boom(n: int) -> None:
        raise ValueError(n)

    async def flaky(n: int) -> int:
        context = get_task_context()
        if context is not None and context.attempt < 2:
            raise ValueError(f"attempt {context.attempt}")
        return n

    async def blocked() -> None:
        await release.wait()

    manager = TaskManager(database_url=schema_db_url, poll_interval=0.05, shutdown_grace=0.1)
    manager.task(name="ok")(ok)
    manager.task(name="boom")(boom)
    manager.task(name="flaky", retries=2)(flaky)
    manager.task(name="blocked")(blocked)
    await manager.startup()
    try:
        for n in range(30):
            await manager.enqueue(ok, n)
        for n in range(4):
            await manager.enqueue(boom, n)
            await manager.enqueue(flaky, n)
        held = [await manager.enqueue(blocked) for _ in range(3)]
        for _ in range(400):
            if not await count_active(engine, held):
                break
            await asyncio.sleep(0.025)
        await manager.cancel(held[0])  # running on this instance
    finally:
        await manager.shutdown()  # the two still blocked become interrupted
    cells = await rollup_matches(engine)
    by_status: dict[str, int] = {}
    for (func_name, status, _bucket), cell in cells.items():
        key = f"{func_name}:{status}"
        by_status[key] = by_status.get(key, 0) + cell[0]
    assert by_status == {
        "ok:success": 30,
        "boom:failed": 4,
        "flaky:success": 4,  # retried twice each, counted once, when it finished
        "blocked:cancelled": 1,
        "blocked:interrupted": 2,
    }


async def test_recovered_tasks_are_counted(schema_db_url: str, engine: AsyncEngine) -> None:
    past = utcnow() - timedelta(minutes=5)
    dead = [
        task(n, TaskStatus.RUNNING, owner="dead:1:x", lease_expires_at=past, start_time=past)
        for n in range(4)
    ]
    unknown = task(9, TaskStatus.PENDING, func_name="gone", owner=None)
    # A short lease: running rows are recovered one lease after startup.
    manager = TaskManager(database_url=schema_db_url, poll_interval=0.05, lease_seconds=1.0)

    async def job() -> None:
        return None

    manager.task(name="job")(job)
    await manager.startup()
    try:
        await manager.repository.apply(WriteBatch(inserts=[*dead, unknown]))
        for _ in range(200):
            async with engine.connect() as conn:
                left = await conn.scalar(
                    select(func.count()).where(T.c.status.in_(["pending", "running"]))
                )
            if not left:
                break
            await asyncio.sleep(0.05)
    finally:
        await manager.shutdown()
    cells = await rollup_matches(engine)
    assert cells[("job", "interrupted", -1)][0] == 4
    assert cells[("gone", "failed", -1)][0] == 1


# -- rebuilding -------------------------------------------------------------------------


async def test_rebuild_equals_the_incremental_rollup(
    repo: SqlTaskRepository, engine: AsyncEngine
) -> None:
    rng = random.Random(5)
    statuses = [TaskStatus.SUCCESS] * 6 + [TaskStatus.FAILED, TaskStatus.CANCELLED]
    rows = [
        task(n, rng.choice(statuses), func_name=f"f{n % 4}", duration_ms=rng.uniform(0.01, 9e4))
        for n in range(500)
    ]
    for start in range(0, 500, 50):
        await repo.apply(WriteBatch(inserts=rows[start : start + 50]))
    before = await rollup_matches(engine)
    metrics_before = (await repo.metrics()).to_dict()
    async with engine.begin() as conn:  # a hand edit: taskflow's roll-up cannot know
        await conn.execute(update(T).where(T.c.func_name == "f0").values(func_name="renamed"))
    assert await rebuild_stats(repo.write_engine) == 500
    after = await rollup_matches(engine)
    assert sum(c[0] for c in after.values()) == sum(c[0] for c in before.values())
    assert any(key[0] == "renamed" for key in after)
    async with engine.begin() as conn:
        await conn.execute(update(T).where(T.c.func_name == "renamed").values(func_name="f0"))
    await repo.rebuild_stats()
    rebuilt = (await repo.metrics()).to_dict()
    # Equal, but for the order in which the duration sums were added up.
    assert _same_metrics(rebuilt, metrics_before)


def _same_metrics(got: dict[str, Any], want: dict[str, Any]) -> bool:
    assert {k: v for k, v in got.items() if k != "by_function"} == pytest.approx(
        {k: v for k, v in want.items() if k != "by_function"}
    )
    for mine, theirs in zip(got["by_function"], want["by_function"], strict=True):
        assert mine.pop("func_name") == theirs.pop("func_name")
        assert mine == pytest.approx(theirs)
    return True


async def test_rebuild_stats_command(schema_db_url: str, engine: AsyncEngine) -> None:
    repository = SqlTaskRepository(engine)
    try:
        await repository.apply(WriteBatch(inserts=[task(n, TaskStatus.SUCCESS) for n in range(3)]))
    finally:
        await repository.release()
    async with engine.begin() as conn:
        await conn.execute(delete(S))
    result = subprocess.run(
        [sys.executable, "-m", "taskflow.cli", "db", "rebuild-stats", "--url", schema_db_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout.strip()) == (
        0,
        "rebuilt task statistics from 3 finished task(s)",
    ), result.stderr
    await rollup_matches(engine)


async def test_upgrade_backfills_finished_tasks(db_url: str) -> None:
    engine = create_engine_for(resolve_database_url(db_url))
    try:
        await migrate.upgrade(engine, "0001")
        rows = [task(n, TaskStatus.SUCCESS) for n in range(5)] + [task(0, TaskStatus.PENDING)]
        async with engine.begin() as conn:
            from taskflow.repository.sql.mapping import insert_params

            await conn.execute(T.insert(), [insert_params(r) for r in rows])
        await migrate.upgrade(engine, "head")
        cells = await rollup_matches(engine)
        assert sum(c[0] for c in cells.values()) == 5
    finally:
        await engine.dispose()
