"""Per-request cost of "request + one no-op task": taskflow against plain BackgroundTasks.

Both apps are driven in-process through httpx's ASGI transport, in the same
run, with the same client.  For taskflow every transition is durable on a
SQLite file (WAL), on PostgreSQL with ``--database postgres``, or on Redis
with ``--database redis``; each
response waits until its task's row is committed, and the clock stops only
when every task's final state is committed.  Prints the per-request cost of
each and their ratio.

    python benchmarks/request_overhead.py --requests 3000 --concurrency 16
    python benchmarks/request_overhead.py --database postgres --concurrency 16
    python benchmarks/request_overhead.py --database redis --concurrency 16

PostgreSQL: ``TASKFLOW_BENCH_POSTGRES_URL``, default
``postgresql://postgres@127.0.0.1:5432/taskflow_test``; the taskflow tables
there are emptied before each run.  Redis: ``TASKFLOW_BENCH_REDIS_URL``,
default ``redis://127.0.0.1:6379/11``, under a fresh key prefix per run,
deleted after it.

When fastapi-taskflow is installed (``pip install fastapi-taskflow``; its
import name is ``fastapi_taskflow``, so it sits beside ours), the same run also
measures its quick start with the SQLite snapshot on.  It runs each task
inside the request and writes the snapshot every ``snapshot_interval``
seconds, so nothing of its pending tasks is on disk when its clock stops.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import os
import statistics
import tempfile
import time
import uuid

import httpx
from fastapi import BackgroundTasks, FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from taskflow import TaskAdmin, TaskManager


def noop(n: int) -> None:
    return None


async def anoop(n: int) -> None:
    return None


def plain_app(sync_task: bool) -> FastAPI:
    app = FastAPI()
    func = noop if sync_task else anoop

    @app.post("/work")
    async def work(background_tasks: BackgroundTasks) -> dict[str, bool]:
        background_tasks.add_task(func, 1)
        return {"ok": True}

    return app


POSTGRES_URL = os.environ.get(
    "TASKFLOW_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/taskflow_test"
)
REDIS_URL = os.environ.get("TASKFLOW_BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
TABLES = "taskflow_task_logs, taskflow_idempotency_keys, taskflow_task_stats, taskflow_tasks"


def taskflow_app(
    url: str, sync_task: bool, commit_interval: float | None = None
) -> tuple[FastAPI, TaskManager]:
    manager = TaskManager(database_url=url, commit_interval=commit_interval, create_tables=True)
    app = FastAPI()
    TaskAdmin(app, manager, auto_install=True, auth=False)
    func = manager.task()(noop if sync_task else anoop)

    @app.post("/work")
    async def work(background_tasks: BackgroundTasks) -> dict[str, str]:
        task_id = background_tasks.add_task(func, 1)
        return {"task_id": task_id}  # type: ignore[dict-item]

    return app, manager


async def measure_described(requests: int, concurrency: int, sync_task: bool) -> float:
    """The described system's quick start, with its SQLite snapshot."""
    import fastapi.dependencies.utils as fastapi_utils
    from fastapi_taskflow import TaskAdmin as DescribedAdmin
    from fastapi_taskflow import TaskManager as DescribedManager

    # Its auto_install patches FastAPI for the whole process and keeps the
    # patch after shutdown: undo it, or the next plain app would use it.
    factory = fastapi_utils.BackgroundTasks
    try:
        with tempfile.TemporaryDirectory() as tmp:
            manager = DescribedManager(snapshot_db=os.path.join(tmp, "snapshot.db"))
            app = FastAPI()
            DescribedAdmin(app, manager, auto_install=True)
            func = manager.task()(noop if sync_task else anoop)

            @app.post("/work")
            async def work(background_tasks: BackgroundTasks) -> dict[str, str]:
                return {"task_id": background_tasks.add_task(func, 1)}  # type: ignore[func-returns-value]

            async with app.router.lifespan_context(app):
                return await drive(app, requests, concurrency) / requests
    finally:
        fastapi_utils.BackgroundTasks = factory  # type: ignore[misc]


async def drive(app: FastAPI, requests: int, concurrency: int) -> float:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        remaining = requests

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                response = await client.post("/work")
                assert response.status_code == 200

        for _ in range(50):  # warm-up
            await client.post("/work")
        # Start the clock on a clean heap: otherwise a full collection of the
        # start-up's garbage (the app, the engine, the migrations) lands inside
        # a short run and is billed to its requests.  Every system gets it.
        gc.collect()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


async def measure_plain(requests: int, concurrency: int, sync_task: bool) -> float:
    return await drive(plain_app(sync_task), requests, concurrency) / requests


async def measure_taskflow(
    requests: int,
    concurrency: int,
    sync_task: bool,
    commit_interval: float | None = None,
    database: str = "sqlite",
) -> tuple[float, int]:
    if database == "postgres":
        await empty_postgres()
        return await _run_taskflow(POSTGRES_URL, requests, concurrency, sync_task, commit_interval)
    if database == "redis":
        prefix = f"bench{uuid.uuid4().hex[:8]}"
        url = f"{REDIS_URL}?key_prefix={prefix}"
        try:
            return await _run_taskflow(url, requests, concurrency, sync_task, commit_interval)
        finally:
            await delete_redis_prefix(prefix)
    with tempfile.TemporaryDirectory() as tmp:
        db_path = os.path.join(tmp, "bench.db")
        url = f"sqlite:///{db_path}"
        return await _run_taskflow(url, requests, concurrency, sync_task, commit_interval)


async def _run_taskflow(
    url: str, requests: int, concurrency: int, sync_task: bool, commit_interval: float | None
) -> tuple[float, int]:
    app, manager = taskflow_app(url, sync_task, commit_interval)
    async with app.router.lifespan_context(app):
        elapsed = await drive(app, requests, concurrency)
        started = time.perf_counter()
        await manager.drain()
        elapsed += time.perf_counter() - started
        counted = await manager.metrics()
    return elapsed / requests, counted.counts.get("success", 0)


async def delete_redis_prefix(prefix: str) -> None:
    """Delete every key of one run's deployment (they all carry the hash tag ``{prefix}``)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        doomed = [key async for key in client.scan_iter(match=f"{{{prefix}}}:*", count=1000)]
        for start in range(0, len(doomed), 500):
            await client.delete(*doomed[start : start + 500])
    finally:
        await client.aclose()


async def empty_postgres() -> None:
    engine = create_async_engine(POSTGRES_URL.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        async with engine.begin() as conn:
            exists = await conn.scalar(text("SELECT to_regclass('taskflow_tasks') IS NOT NULL"))
            if exists:
                await conn.execute(text(f"TRUNCATE {TABLES}"))
    finally:
        await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sync-task", action="store_true", help="a def task (thread pool)")
    parser.add_argument("--database", choices=["sqlite", "postgres", "redis"], default="sqlite")
    opts = parser.parse_args()
    plain_runs, flow_runs, described_runs = [], [], []
    with_described = importlib.util.find_spec("fastapi_taskflow") is not None
    for _ in range(opts.rounds):
        gc.collect()
        plain_runs.append(await measure_plain(opts.requests, opts.concurrency, opts.sync_task))
        gc.collect()
        per_request, done = await measure_taskflow(
            opts.requests, opts.concurrency, opts.sync_task, database=opts.database
        )
        expected = opts.requests + 50
        if done != expected:
            raise SystemExit(f"only {done} of {expected} tasks reached success in the database")
        flow_runs.append(per_request)
        if with_described:
            gc.collect()
            described_runs.append(
                await measure_described(opts.requests, opts.concurrency, opts.sync_task)
            )
    plain, flow = statistics.median(plain_runs), statistics.median(flow_runs)
    kind = "sync (thread)" if opts.sync_task else "async"
    print(
        f"{opts.requests} requests x {opts.rounds} rounds, concurrency {opts.concurrency}, "
        f"{kind} no-op task"
    )
    print(f"  FastAPI BackgroundTasks (memory only): {plain * 1e6:8.1f} us/request")
    where = {"sqlite": "SQLite (WAL)", "postgres": "PostgreSQL", "redis": "Redis"}[opts.database]
    print(f"  taskflow, durable on {where + ':':<17}{flow * 1e6:8.1f} us/request")
    print(f"  ratio: {flow / plain:.2f}x")
    if described_runs:
        described = statistics.median(described_runs)
        print(f"  fastapi-taskflow, SQLite snapshot:     {described * 1e6:8.1f} us/request")
        print(f"  ratio: {described / plain:.2f}x (pending tasks not on disk)")


if __name__ == "__main__":
    asyncio.run(main())
