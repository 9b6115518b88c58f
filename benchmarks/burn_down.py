"""Burn-down: how fast one instance drains N queued no-op jobs from the database.

N unowned pending rows are inserted first (as if enqueued by other processes
or left by a dead instance); then one TaskManager claims and runs them all,
and the clock stops when every row is ``success`` in the database.  For
comparison the script also runs a raw asyncpg loop (PostgreSQL only) that
takes one job at a time with ``SELECT ... FOR UPDATE SKIP LOCKED`` and
commits three writes per job, with ``--concurrency`` workers.

On Redis (``--url redis://...``) the rows go under a fresh ``key_prefix``
(deleted afterwards), and the comparison is arq, the asyncio Redis job queue:
N no-op jobs enqueued with ``ArqRedis.enqueue_job`` into database
``--arq-db`` (emptied with FLUSHDB before and after), then one arq ``Worker``
with ``max_jobs=--concurrency`` and ``burst=True`` runs them all; its clock
runs from the worker's start to the last job's completion.  arq is not a
dependency of taskflow, and it pins ``redis<6`` (under redis-py 8 every
``enqueue_job`` keeps a connection), so install it apart and name the
directory: ``pip install --target /tmp/arq arq`` then ``--arq-path /tmp/arq``
(the arq side then runs in a child process with that directory first on its
path).  Without ``--arq-path`` the arq side runs in-process if ``import arq``
works with a redis-py below 6, and is skipped otherwise.

    python benchmarks/burn_down.py --url postgresql://postgres@127.0.0.1/taskflow_bench --jobs 20000
    pip install --target /tmp/arq arq
    python benchmarks/burn_down.py --url redis://127.0.0.1:6379/0 --jobs 20000 --arq-path /tmp/arq
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import func, select

from taskflow import TaskManager
from taskflow.db.engine import create_engine_for
from taskflow.db.migrate import ensure_schema
from taskflow.db.tables import metadata, tasks_table
from taskflow.ids import new_task_id
from taskflow.models import TaskRecord, TaskStatus, utcnow
from taskflow.repository.base import WriteBatch
from taskflow.repository.factory import create_repository
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


async def fill(url: str, jobs: int) -> None:
    """Insert ``jobs`` unowned pending rows through the backend's own repository."""
    repository = create_repository(resolve_database_url(url))
    await repository.open()
    try:
        for start in range(0, jobs, 2000):
            rows = [job() for _ in range(min(2000, jobs - start))]
            await repository.apply(WriteBatch(inserts=rows))
    finally:
        release = getattr(repository, "release", None)
        if release is not None:
            await release()  # SQL: the connection its group commits keep
        await repository.close()


async def remaining(engine: Any) -> int:
    async with engine.connect() as conn:
        found = await conn.execute(
            select(func.count()).where(tasks_table.c.status != TaskStatus.SUCCESS.value)
        )
        return int(found.scalar() or 0)


async def burn_taskflow(url: str, jobs: int, concurrency: int) -> float:
    if is_redis(url):
        return await burn_taskflow_redis(url, jobs, concurrency)
    engine = await reset(url)
    await fill(url, jobs)
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
    await engine.dispose()
    await fill(url, jobs)
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


def is_redis(url: str) -> bool:
    return url.split(":", 1)[0] in ("redis", "rediss", "unix")


def with_prefix(url: str, prefix: str) -> str:
    """``url`` with its ``key_prefix`` option set to ``prefix``."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "key_prefix"]
    query.append(("key_prefix", prefix))
    return urlunsplit(parts._replace(query=urlencode(query)))


def redis_client(url: str) -> Any:
    """A plain redis-py client for the server and database of ``url``."""
    import redis.asyncio as aioredis

    target = resolve_database_url(url)
    return aioredis.from_url(target.url.render_as_string(hide_password=False))


async def drop_prefix(client: Any, prefix: str) -> int:
    """Delete every key of the deployment ``prefix``; returns how many."""
    dropped = 0
    batch: list[bytes] = []
    async for key in client.scan_iter(match=f"{{{prefix}}}:*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            dropped += await client.unlink(*batch)
            batch = []
    if batch:
        dropped += await client.unlink(*batch)
    return dropped


async def burn_taskflow_redis(url: str, jobs: int, concurrency: int) -> float:
    from taskflow.repository.redis.keys import KeySpace

    prefix = f"bench_burn_{uuid.uuid4().hex[:12]}"
    url = with_prefix(url, prefix)
    client = redis_client(url)
    done_key = KeySpace(prefix).by_status(TaskStatus.SUCCESS.value)
    try:
        await fill(url, jobs)
        manager = TaskManager(
            database_url=url, max_concurrent_tasks=concurrency, poll_interval=0.05
        )
        manager.task(name="noop")(noop)
        started = time.perf_counter()
        await manager.startup()
        try:
            while await client.zcard(done_key) < jobs:
                await asyncio.sleep(0.01)
            await manager.flush()
            elapsed = time.perf_counter() - started
        finally:
            await manager.shutdown()
    finally:
        await drop_prefix(client, prefix)
        await client.aclose()
    return elapsed


async def arq_noop(ctx: dict[str, Any]) -> None:
    return None


ARQ_MISSING = (
    "  arq:                 skipped (pip install --target /tmp/arq arq, then --arq-path /tmp/arq)"
)


async def compare_arq(
    url: str, jobs: int, concurrency: int, db: int, arq_path: str | None
) -> float | None:
    """arq's burn-down seconds on the same server, or None when arq cannot run here."""
    if arq_path is None:
        try:
            import arq  # noqa: F401
            import redis
        except ImportError:
            print(ARQ_MISSING)
            return None
        if int(redis.__version__.split(".")[0]) >= 6:
            print(f"  arq:                 skipped (needs redis-py < 6, found {redis.__version__})")
            print(ARQ_MISSING)
            return None
        return await burn_arq(url, jobs, concurrency, db)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (arq_path, env.get("PYTHONPATH")) if p)
    command = [sys.executable, __file__, "--arq-child", "--url", url, "--jobs", str(jobs)]
    command += ["--concurrency", str(concurrency), "--arq-db", str(db)]
    child = await asyncio.create_subprocess_exec(*command, env=env, stdout=subprocess.PIPE)
    out, _ = await child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"the arq run failed (exit {child.returncode})")
    return float(out.decode().split()[-1])


async def burn_arq(url: str, jobs: int, concurrency: int, db: int) -> float:
    """arq on the same server, database ``db``: enqueue, then one burst worker."""
    import arq
    from arq import create_pool
    from arq.connections import RedisSettings
    from arq.worker import Worker
    from redis import __version__ as redis_version

    print(
        f"  (arq {arq.VERSION}, redis-py {redis_version} from {os.path.dirname(arq.__file__)})",
        file=sys.stderr,
    )
    target = resolve_database_url(url).url
    settings = RedisSettings(
        host=target.host or "127.0.0.1",
        port=target.port or 6379,
        database=db,
        password=target.password,
        username=target.username,
    )
    pool = await create_pool(settings)
    await pool.flushdb()
    for _ in range(jobs):  # one at a time, as callers would (not timed)
        await pool.enqueue_job("arq_noop")
    last_end = 0.0

    async def after_job_end(ctx: dict[str, Any]) -> None:
        nonlocal last_end
        last_end = time.perf_counter()

    worker = Worker(
        functions=[arq_noop],
        redis_pool=pool,
        burst=True,
        max_jobs=concurrency,
        handle_signals=False,
        poll_delay=0.05,
        after_job_end=after_job_end,
    )
    try:
        started = time.perf_counter()
        await worker.async_run()
        if worker.jobs_complete != jobs:
            raise RuntimeError(f"arq completed {worker.jobs_complete} of {jobs} jobs")
        elapsed = last_end - started
    finally:
        await worker.close()  # closes the pool too
        cleanup = await create_pool(settings)
        await cleanup.flushdb()
        await cleanup.aclose()
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1/taskflow_bench")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--arq-db", type=int, default=14, help="Redis database arq uses (emptied); default 14"
    )
    parser.add_argument("--arq-path", help="a directory holding arq (pip install --target DIR arq)")
    parser.add_argument("--arq-child", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.arq_child:  # the arq side, run by compare_arq() with arq's own redis-py
        print(await burn_arq(opts.url, opts.jobs, opts.concurrency, opts.arq_db))
        return
    flow = await burn_taskflow(opts.url, opts.jobs, opts.concurrency)
    print(f"{opts.jobs} no-op jobs, concurrency {opts.concurrency}, {opts.url.split(':')[0]}")
    print(f"  taskflow:            {opts.jobs / flow:8.0f} jobs/s ({flow:.1f} s)")
    if opts.url.startswith("postgres"):
        raw = await burn_raw_asyncpg(opts.url, opts.jobs, opts.concurrency)
        print(f"  raw asyncpg loop:    {opts.jobs / raw:8.0f} jobs/s ({raw:.1f} s)")
        print(f"  ratio taskflow/raw:  {raw / flow:.2f}x the throughput")
    if is_redis(opts.url):
        arq = await compare_arq(opts.url, opts.jobs, opts.concurrency, opts.arq_db, opts.arq_path)
        if arq is not None:
            label = f"arq (max_jobs {opts.concurrency}):"
            print(f"  {label:<21}{opts.jobs / arq:8.0f} jobs/s ({arq:.1f} s)")
            print(f"  ratio taskflow/arq:  {arq / flow:.2f}x the throughput")


if __name__ == "__main__":
    asyncio.run(main())
