"""Redis memory and read times: a million finished tasks in one deployment.

Inserts ``--tasks`` finished tasks (default 1,000,000) through the Redis
repository's ``apply()`` in batches, under a fresh ``key_prefix`` in Redis
database ``--db`` (default 13, emptied with FLUSHDB before and at the end).
The tasks look like an app's history: eight functions with skewed weights,
small JSON arguments, two tags, a small result, durations from 1 ms to 30 s,
created over 30 days, 90% ``success`` and 10% ``failed`` (with an error and
a short stack trace).  It then reports:

- memory: ``INFO memory`` ``used_memory`` before and after, per task, next to
  the bytes of arguments (args + kwargs as stored JSON) per task;
- reads through the repository, median and p95 of ``--calls`` calls after 3
  warm-up calls: ``list_tasks(TaskQuery(limit=30))``, the same filtered by
  status ``failed`` and one function, and ``metrics()``;
- the same reads through the admin API (``TaskManager`` + ``TaskAdmin`` served
  in-process through httpx's ``ASGITransport``): ``GET /tasks?limit=30``,
  ``GET /tasks?status=failed&func_name=...&limit=30``, ``GET /tasks/metrics``;
- retention: ``delete_finished_before()`` with a cutoff that takes half of
  the tasks, its time, and the memory after.

    python benchmarks/redis_memory.py                       # 1,000,000 tasks
    python benchmarks/redis_memory.py --tasks 200000 --url redis://127.0.0.1:6379
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import redis.asyncio as aioredis
from fastapi import FastAPI

from taskflow import TaskAdmin, TaskManager
from taskflow.ids import new_task_id
from taskflow.models import TaskRecord, TaskStatus
from taskflow.repository.base import TaskQuery, WriteBatch
from taskflow.repository.factory import create_repository
from taskflow.settings import resolve_database_url

FUNCTIONS = (
    "send_email",
    "resize_image",
    "sync_crm",
    "charge_card",
    "build_report",
    "notify_slack",
    "export_csv",
    "score_lead",
)
WEIGHTS = (35, 20, 12, 10, 8, 7, 5, 3)
FILTER_FUNC = "charge_card"
SPAN = timedelta(days=30)
STACK = (
    "Traceback (most recent call last):\n"
    '  File "/app/tasks.py", line 41, in {func}\n'
    "    response = await client.post(url, json=payload)\n"
    '  File "/app/http.py", line 88, in post\n'
    "    raise UpstreamError(status)\n"
    "app.http.UpstreamError: upstream answered 503\n"
)


def database_url(url: str, db: int, prefix: str) -> str:
    """``url`` pointed at database ``db`` with ``key_prefix=prefix``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}", query=f"key_prefix={prefix}"))


def task(rng: random.Random, n: int, count: int, now: datetime) -> TaskRecord:
    """The ``n``-th of ``count`` finished tasks, oldest first."""
    func = rng.choices(FUNCTIONS, WEIGHTS)[0]
    created = now - SPAN * (1 - n / count)
    ms = math.exp(rng.uniform(math.log(1), math.log(30_000)))
    started = created + timedelta(milliseconds=rng.uniform(1, 50))
    ended = started + timedelta(milliseconds=ms)
    failed = rng.random() < 0.10
    user = rng.randrange(1, 500_000)
    return TaskRecord(
        task_id=new_task_id(),
        func_name=func,
        status=TaskStatus.FAILED if failed else TaskStatus.SUCCESS,
        args=(user,),
        kwargs={"template": "welcome", "locale": rng.choice(("en", "de", "fr"))},
        created_at=created,
        run_at=created,
        updated_at=ended,
        start_time=started,
        end_time=ended,
        duration_ms=ms,
        retries_used=rng.choice((0, 0, 0, 1)) if failed else 0,
        max_retries=3,
        tags={"tenant": f"t{user % 40}", "plan": rng.choice(("free", "pro"))},
        result=None if failed else {"ok": True, "id": user * 7},
        error="UpstreamError: upstream answered 503" if failed else None,
        stacktrace=STACK.format(func=func) if failed else None,
        executor="async",
    )


def argument_bytes(record: TaskRecord) -> int:
    return len(json.dumps(list(record.args))) + len(json.dumps(record.kwargs))


async def used_memory(client: aioredis.Redis) -> int:
    return int((await client.info("memory"))["used_memory"])


async def fill(repository: Any, count: int, batch: int) -> tuple[float, int]:
    """Insert ``count`` tasks; returns seconds and argument bytes in all."""
    rng = random.Random(7)
    now = datetime.now(timezone.utc)
    args = 0
    started = time.perf_counter()
    for start in range(0, count, batch):
        rows = [task(rng, n, count, now) for n in range(start, min(start + batch, count))]
        args += sum(argument_bytes(row) for row in rows)
        await repository.apply(WriteBatch(inserts=rows))
        if start and start % 100_000 < batch:
            print(f"  ... {start:,} tasks, {time.perf_counter() - started:.0f} s", flush=True)
    return time.perf_counter() - started, args


async def timed(call: Callable[[], Awaitable[Any]], calls: int) -> tuple[float, float]:
    """Median and p95 seconds of ``calls`` calls after 3 warm-up calls."""
    timings = []
    for attempt in range(calls + 3):
        t0 = time.perf_counter()
        await call()
        if attempt >= 3:
            timings.append(time.perf_counter() - t0)
    timings.sort()
    return statistics.median(timings), timings[max(0, math.ceil(0.95 * len(timings)) - 1)]


def show(label: str, median: float, p95: float) -> None:
    print(f"  {label:<58} {median * 1000:8.1f} ms  (p95 {p95 * 1000:.1f} ms)")


async def repository_reads(repository: Any, calls: int) -> None:
    print(f"reads through the repository, median of {calls}:")
    failed = [TaskStatus.FAILED]

    async def latest() -> None:
        assert len((await repository.list_tasks(TaskQuery(limit=30))).items) == 30

    async def filtered() -> None:
        query = TaskQuery(status=failed, func_name=FILTER_FUNC, limit=30)
        assert len((await repository.list_tasks(query)).items) == 30

    async def metrics() -> None:
        await repository.metrics()

    show("list_tasks(TaskQuery(limit=30))", *await timed(latest, calls))
    show(
        f"list_tasks(status=failed, func_name={FILTER_FUNC}, limit=30)",
        *await timed(filtered, calls),
    )
    show("metrics()", *await timed(metrics, calls))


async def admin_reads(url: str, calls: int) -> None:
    print(f"reads through the admin API (in-process, httpx ASGITransport), median of {calls}:")
    manager = TaskManager(database_url=url)
    app = FastAPI()
    TaskAdmin(app, manager, auto_install=True, auth=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for path, params in (
                ("/tasks", {"limit": 30}),
                ("/tasks", {"status": "failed", "func_name": FILTER_FUNC, "limit": 30}),
                ("/tasks/metrics", {}),
            ):

                async def get(path: str = path, params: dict[str, Any] = params) -> None:
                    response = await client.get(path, params=params)
                    assert response.status_code == 200, (path, response.text[:200])

                query = "&".join(f"{k}={v}" for k, v in params.items())
                show(f"GET {path}{'?' + query if query else ''}", *await timed(get, calls))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379", help="the Redis server")
    parser.add_argument("--db", type=int, default=13, help="database to use (emptied); default 13")
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=2000, help="tasks per apply()")
    parser.add_argument("--calls", type=int, default=20, help="timed calls per read")
    parser.add_argument("--no-admin", action="store_true", help="skip the admin API reads")
    opts = parser.parse_args()

    prefix = f"bench_mem_{uuid.uuid4().hex[:12]}"
    url = database_url(opts.url, opts.db, prefix)
    client = aioredis.from_url(url.split("?")[0])
    await client.flushdb()
    repository = create_repository(resolve_database_url(url))
    await repository.open()
    await repository.prepare_schema(migrate=True)
    try:
        info = await client.info("server")
        print(f"Redis {info['redis_version']}, database {opts.db}, prefix {prefix}")
        before = await used_memory(client)
        print(f"filling {opts.tasks:,} finished tasks in batches of {opts.batch}:")
        seconds, args = await fill(repository, opts.tasks, opts.batch)
        after = await used_memory(client)
        per_task = (after - before) / opts.tasks
        print(f"  filled in {seconds:.0f} s ({opts.tasks / seconds:,.0f} tasks/s)")
        print(f"memory: used_memory {before:,} -> {after:,} bytes")
        print(f"  {per_task:,.0f} bytes per task", end="")
        print(f"; its arguments (args + kwargs JSON) {args / opts.tasks:.0f} of them")
        print(f"  keys in database {opts.db}: {await client.dbsize():,}")

        await repository_reads(repository, opts.calls)
        if not opts.no_admin:
            await admin_reads(url, opts.calls)

        now = datetime.now(timezone.utc)
        cutoff = now - SPAN / 2
        print(f"retention: delete_finished_before(now - {SPAN.days / 2:g} days)")
        started = time.perf_counter()
        deleted = await repository.delete_finished_before(cutoff)
        took = time.perf_counter() - started
        left = await used_memory(client)
        remaining = opts.tasks - deleted
        print(f"  deleted {deleted:,} tasks in {took:.1f} s ({deleted / max(took, 1e-9):,.0f}/s)")
        kept = (left - before) / max(remaining, 1)
        print(f"  used_memory {left:,} bytes: {kept:,.0f} per remaining task")
        print(f"  memory freed: {(after - left) / max(deleted, 1):,.0f} bytes per deleted task")
        counts = (await repository.metrics()).counts
        print(f"  metrics() counts after: {counts}")
    finally:
        await repository.close()
        await client.flushdb()
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
