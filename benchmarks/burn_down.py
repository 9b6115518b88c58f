"""Burn-down: how fast one instance drains N queued no-op jobs from the database.

N unowned pending rows are inserted first (as if enqueued by other processes
or left by a dead instance); then one TaskManager claims and runs them all,
and the clock stops when every row is ``success`` in the database.  For
comparison the script also runs a raw asyncpg loop (PostgreSQL only) that
takes one job at a time with ``SELECT ... FOR UPDATE SKIP LOCKED`` and
commits three writes per job, with ``--concurrency`` workers.

    python benchmarks/burn_down.py --url postgresql://postgres@127.0.0.1/taskflow_bench --jobs 20000
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from taskflow import TaskManager
from taskflow.db.engine import create_engine_for
from taskflow.db.migrate import ensure_schema
from taskflow.db.tables import metadata, tasks_table
from taskflow.ids import new_task_id
from taskflow.models import TaskRecord, TaskStatus, utcnow
from taskflow.repository.base import WriteBatch
from taskflow.repository.sql import SqlTaskRepository
from taskflow.settings import resolve_database_url


async def noop() -> None:
    return None


async def reset(url: str) -> Any:
    engine = create_engine_for(resolve_database_url(url))
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.exec_driver_sql("DROP TABLE IF EXISTS taskflow_alembic_version")
    await engine.dispose()
    engine = create_engine_for(resolve_database_url(url))
    await ensure_schema(engine)
    return engine


def job() -> TaskRecord:
    now = utcnow() - timedelta(seconds=1)
    return TaskRecord(
        task_id=new_task_id(),
        func_name="noop",
        status=TaskStatus.PENDING,
        created_at=now,
        run_at=now,
        updated_at=now,
        executor="async",
    )


async def fill(engine: Any, jobs: int) -> None:
    repository = SqlTaskRepository(engine)
    try:
        for start in range(0, jobs, 2000):
            rows = [job() for _ in range(min(2000, jobs - start))]
            await repository.apply(WriteBatch(inserts=rows))
    finally:
        await repository.release()  # the connection its group commits keep


async def remaining(engine: Any) -> int:
    async with engine.connect() as conn:
        found = await conn.execute(
            select(func.count()).where(tasks_table.c.status != TaskStatus.SUCCESS.value)
        )
        return int(found.scalar() or 0)


async def burn_taskflow(url: str, jobs: int, concurrency: int) -> float:
    engine = await reset(url)
    await fill(engine, jobs)
    manager = TaskManager(database_url=url, max_concurrent_tasks=concurrency, poll_interval=0.05)
    manager.task(name="noop")(noop)
    started = time.perf_counter()
    await manager.startup()
    try:
        while await remaining(engine):
            await asyncio.sleep(0.05)
        await manager.flush()
        elapsed = time.perf_counter() - started
    finally:
        await manager.shutdown()
        await engine.dispose()
    return elapsed


async def burn_raw_asyncpg(url: str, jobs: int, concurrency: int) -> float:
    import asyncpg

    dsn = resolve_database_url(url).url.set(drivername="postgresql").render_as_string(False)
    engine = await reset(url)
    await fill(engine, jobs)
    await engine.dispose()
    pool = await asyncpg.create_pool(dsn, min_size=concurrency, max_size=concurrency)

    async def worker() -> None:
        while True:
            async with pool.acquire() as conn:
                async with conn.transaction():
                    row = await conn.fetchrow(
                        "SELECT id FROM taskflow_tasks WHERE status = 'pending' "
                        "ORDER BY run_at LIMIT 1 FOR UPDATE SKIP LOCKED"
                    )
                    if row is None:
                        return
                    await conn.execute(
                        "UPDATE taskflow_tasks SET status = 'running' WHERE id = $1", row["id"]
                    )
                await noop()
                await conn.execute(
                    "UPDATE taskflow_tasks SET status = 'success' WHERE id = $1", row["id"]
                )

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await pool.close()
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1/taskflow_bench")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    opts = parser.parse_args()
    flow = await burn_taskflow(opts.url, opts.jobs, opts.concurrency)
    print(f"{opts.jobs} no-op jobs, concurrency {opts.concurrency}, {opts.url.split(':')[0]}")
    print(f"  taskflow:            {opts.jobs / flow:8.0f} jobs/s ({flow:.1f} s)")
    if opts.url.startswith("postgres"):
        raw = await burn_raw_asyncpg(opts.url, opts.jobs, opts.concurrency)
        print(f"  raw asyncpg loop:    {opts.jobs / raw:8.0f} jobs/s ({raw:.1f} s)")
        print(f"  ratio taskflow/raw:  {raw / flow:.2f}x the throughput")


if __name__ == "__main__":
    asyncio.run(main())
