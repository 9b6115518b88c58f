"""History at scale: dashboard reads over a million task rows, per database.

Fills a fresh database with ``--rows`` tasks (about ten functions, mostly
``success`` with some failed, cancelled and interrupted, a few hundred
pending and running, durations spread from a millisecond to minutes,
created over 30 days, a few thousand log lines), rebuilds the statistics
roll-up (``taskflow db rebuild-stats``), then starts the real app in-process
(``TaskManager`` + ``TaskAdmin`` through httpx's ASGI transport) and times
the dashboard's reads: median and p95 of ``--calls`` calls each, and the
manager's startup.  Its own databases only: a temporary SQLite file and the
PostgreSQL database ``taskflow_scale`` (dropped and created again).

    python benchmarks/history_scale.py --rows 1000000
    python benchmarks/history_scale.py --only sqlite --rows 200000
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from taskflow import TaskAdmin, TaskManager
from taskflow.db.engine import WRITE_OPTION, create_engine_for
from taskflow.db.migrate import ensure_schema
from taskflow.repository.sql.batch import datetime_converter
from taskflow.repository.sql.stats import rebuild_stats
from taskflow.settings import resolve_database_url

FUNCTIONS = (
    "send_email",
    "resize_image",
    "sync_crm",
    "charge_card",
    "build_report",
    "index_document",
    "notify_slack",
    "export_csv",
    "refresh_cache",
    "score_lead",
)
# Relative weights: a few functions do most of the work.
WEIGHTS = (30, 20, 12, 10, 8, 7, 5, 4, 3, 1)
LOGS = 5000
ACTIVE = 300


def _status(r: float) -> str:
    if r < 0.90:
        return "success"
    if r < 0.96:
        return "failed"
    if r < 0.985:
        return "cancelled"
    return "interrupted"


def sqlite_rows(count: int, now: datetime) -> Iterator[tuple[Any, ...]]:
    """Rows for the SQLite fill, oldest first (ids are time-ordered, as taskflow's are)."""
    rng = random.Random(42)
    dt = datetime_converter(_sqlite_dialect())
    span = timedelta(days=30).total_seconds()
    functions = rng.choices(FUNCTIONS, WEIGHTS, k=count)
    for n in range(count):
        created = now - timedelta(seconds=span * (1 - n / count))
        status = _status(rng.random()) if n < count - ACTIVE else rng.choice(("pending", "running"))
        duration = None
        started = finished = None
        if status in ("success", "failed"):
            duration = math.exp(rng.uniform(0, 12))  # 1 ms .. 45 s, log-uniform
        if status != "pending":
            started = created + timedelta(milliseconds=rng.uniform(1, 50))
        if status not in ("pending", "running"):
            finished = started + timedelta(milliseconds=duration or 5.0)  # type: ignore[operator]
        yield (
            str(uuid.UUID(int=(n << 64) | rng.getrandbits(64))),
            functions[n],
            status,
            "manual",
            "async",
            0,
            0,
            dt(created),
            dt(created),
            dt(finished or started or created),
            dt(started),
            dt(finished),
            duration,
            "ValueError: boom" if status == "failed" else None,
            "json",
            1,
        )


def _sqlite_dialect() -> Any:
    from sqlalchemy.dialects.sqlite import dialect

    return dialect()


SQLITE_INSERT = (
    "INSERT INTO taskflow_tasks (id, func_name, status, source, executor, attempt, max_retries,"
    " run_at, created_at, updated_at, started_at, finished_at, duration_ms, error,"
    " payload_format, lease_epoch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def fill_sqlite(path: str, count: int) -> None:
    now = datetime.now(timezone.utc)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    rows = sqlite_rows(count, now)
    while True:
        chunk = [row for _, row in zip(range(100_000), rows, strict=False)]
        if not chunk:
            break
        conn.execute("BEGIN")
        conn.executemany(SQLITE_INSERT, chunk)
        conn.execute("COMMIT")
    conn.execute(
        "INSERT INTO taskflow_task_logs (id, task_id, attempt, level, message, created_at)"
        " SELECT lower(hex(randomblob(16))), id, 0, 'info', 'step done', created_at"
        f" FROM taskflow_tasks ORDER BY created_at DESC LIMIT {LOGS}"
    )
    conn.execute("ANALYZE")
    conn.close()


PG_FILL = """
INSERT INTO taskflow_tasks (id, func_name, status, source, executor, attempt, max_retries,
    run_at, created_at, updated_at, started_at, finished_at, duration_ms, error,
    payload_format, lease_epoch)
SELECT id, func_name, status, 'manual', 'async', 0, 0, created, created,
    coalesce(finished, started, created), started, finished, duration,
    CASE WHEN status = 'failed' THEN 'ValueError: boom' END, 'json', 1
FROM (
    SELECT id, func_name, status, created, duration,
        CASE WHEN status <> 'pending' THEN created + interval '10 ms' END AS started,
        CASE WHEN status NOT IN ('pending', 'running')
            THEN created + interval '10 ms' + coalesce(duration, 5) * interval '1 ms' END
            AS finished
    FROM (
        SELECT gen_random_uuid()::text AS id,
            (ARRAY[{functions}])[1 + width_bucket(f, ARRAY[{cuts}])] AS func_name,
            CASE WHEN g > {rows} - {active} THEN
                    CASE WHEN g % 2 = 0 THEN 'pending' ELSE 'running' END
                WHEN s < 0.90 THEN 'success' WHEN s < 0.96 THEN 'failed'
                WHEN s < 0.985 THEN 'cancelled' ELSE 'interrupted' END AS status,
            now() - interval '30 days' * (1 - g::float8 / {rows}) AS created,
            CASE WHEN s < 0.96 AND g <= {rows} - {active} THEN exp(random() * 12) END AS duration
        FROM (SELECT g, random() AS f, random() AS s FROM generate_series(1, {rows}) AS g) AS r
    ) AS picked
) AS timed
"""


def pg_fill_sql(rows: int) -> str:
    total = sum(WEIGHTS)
    cuts, acc = [], 0
    for weight in WEIGHTS[:-1]:
        acc += weight
        cuts.append(f"{acc / total:.4f}")
    functions = ", ".join(f"'{name}'" for name in FUNCTIONS)
    return PG_FILL.format(functions=functions, cuts=", ".join(cuts), active=ACTIVE, rows=rows)


async def fill_postgres(url: str, count: int) -> None:
    target = resolve_database_url(url)
    server = create_async_engine(target.url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    name = target.url.database
    async with server.connect() as conn:
        await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    await server.dispose()
    engine = create_engine_for(target)
    await ensure_schema(engine)
    async with engine.begin() as conn:
        await conn.exec_driver_sql(pg_fill_sql(count))
        await conn.exec_driver_sql(
            "INSERT INTO taskflow_task_logs (id, task_id, attempt, level, message, created_at)"
            " SELECT gen_random_uuid()::text, id, 0, 'info', 'step done', created_at"
            f" FROM taskflow_tasks ORDER BY created_at DESC LIMIT {LOGS}"
        )
    await engine.dispose()
    vacuum = create_async_engine(target.url, isolation_level="AUTOCOMMIT")
    async with vacuum.connect() as conn:
        await conn.exec_driver_sql("VACUUM ANALYZE")
    await vacuum.dispose()


async def rebuild(url: str) -> tuple[int, float]:
    engine = create_engine_for(resolve_database_url(url))
    try:
        started = time.perf_counter()
        counted = await rebuild_stats(engine.execution_options(**{WRITE_OPTION: True}))
        return counted, time.perf_counter() - started
    finally:
        await engine.dispose()


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f}"


async def measure(url: str, calls: int) -> list[tuple[str, float, float]]:
    manager = TaskManager(database_url=url)
    app = FastAPI()
    TaskAdmin(app, manager, auto_install=True, auth=False)
    results: list[tuple[str, float, float]] = []
    started = time.perf_counter()
    async with app.router.lifespan_context(app):
        startup = time.perf_counter() - started
        results.append(("manager startup", startup, startup))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            first = (await client.get("/tasks", params={"limit": 30})).json()
            task_id = first[0]["task_id"]
            paths: list[tuple[str, dict[str, Any]]] = [
                ("/tasks", {"limit": 30}),
                ("/tasks", {"status": "failed", "limit": 30}),
                ("/tasks", {"func_name": "export_csv", "limit": 30}),
                ("/tasks", {"status": "interrupted", "func_name": "score_lead", "limit": 30}),
                ("/tasks/metrics", {}),
                (f"/tasks/{task_id}", {}),
            ]
            for path, params in paths:
                timings = []
                for attempt in range(calls + 3):
                    t0 = time.perf_counter()
                    response = await client.get(path, params=params)
                    elapsed = time.perf_counter() - t0
                    assert response.status_code == 200, (path, response.text[:200])
                    if attempt >= 3:  # warm-up: connections, prepared statements
                        timings.append(elapsed)
                timings.sort()
                p95 = timings[max(0, math.ceil(0.95 * len(timings)) - 1)]
                query = "&".join(f"{k}={v}" for k, v in params.items())
                label = "GET /tasks/{id}" if path == f"/tasks/{task_id}" else f"GET {path}"
                results.append(
                    (f"{label}{'?' + query if query else ''}", statistics.median(timings), p95)
                )
    return results


def report(title: str, fill: float, counted: int, rebuilt: float, rows: list[Any]) -> None:
    print(f"\n{title}")
    print(f"  fill {fill:.1f} s; rebuild-stats {rebuilt:.2f} s ({counted} finished tasks)")
    print(f"  {'request':58} {'median ms':>9} {'p95 ms':>8}")
    for label, median, p95 in rows:
        print(f"  {label:58} {_ms(median)} {_ms(p95)}")


async def run_sqlite(count: int, calls: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "scale.db")
        url = f"sqlite:///{path}"
        engine = create_engine_for(resolve_database_url(url))
        await ensure_schema(engine)
        await engine.dispose()
        started = time.perf_counter()
        fill_sqlite(path, count)
        fill = time.perf_counter() - started
        counted, rebuilt = await rebuild(url)
        rows = await measure(url, calls)
        report(f"SQLite, {count:,} tasks (file, WAL)", fill, counted, rebuilt, rows)


async def run_postgres(url: str, count: int, calls: int) -> None:
    started = time.perf_counter()
    await fill_postgres(url, count)
    fill = time.perf_counter() - started
    counted, rebuilt = await rebuild(url)
    rows = await measure(url, calls)
    where = make_url(url).render_as_string(hide_password=True)
    report(f"PostgreSQL, {count:,} tasks ({where})", fill, counted, rebuilt, rows)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1/taskflow_scale")
    parser.add_argument("--only", choices=("sqlite", "postgres"))
    opts = parser.parse_args()
    if opts.only in (None, "postgres"):
        await run_postgres(opts.pg_url, opts.rows, opts.calls)
    if opts.only in (None, "sqlite"):
        await run_sqlite(opts.rows, opts.calls)


if __name__ == "__main__":
    asyncio.run(main())
