"""The admin API tests' started app, its jobs, and task rows as another process leaves them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from taskflow import TaskManager
from taskflow.db.tables import tasks_table
from taskflow.ids import new_task_id
from tests.polling import eventually

T = tasks_table


@dataclass
class Admin:
    """A started app with the admin API, its manager, its jobs and a raw-SQL engine."""

    manager: TaskManager
    client: httpx.AsyncClient
    raw: AsyncEngine
    jobs: dict[str, Any]
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]]
    failing: set[str]
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        async with self.raw.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(text(sql), params)]

    async def status(self, task_id: str) -> str | None:
        rows = await self.rows("SELECT status FROM taskflow_tasks WHERE id = :i", i=task_id)
        return rows[0]["status"] if rows else None

    async def finished(self, task_id: str) -> str:
        async def done() -> str | None:
            status = await self.status(task_id)
            return status if status in ("success", "failed", "interrupted", "cancelled") else None

        return await eventually(done)

    async def failed_task(self, name: str, *args: Any, **kwargs: Any) -> str:
        """Run job ``name`` once while it is set to fail; returns the failed task's id."""
        self.failing.add(name)
        try:
            task_id = await self.manager.enqueue(self.jobs[name], *args, **kwargs)
            assert await self.finished(task_id) == "failed"
        finally:
            self.failing.discard(name)
        return task_id

    async def insert_rows(self, rows: list[dict[str, Any]]) -> None:
        async with self.raw.begin() as conn:
            await conn.execute(insert(T), rows)

    async def audit(self) -> list[dict[str, Any]]:
        response = await self.client.get("/tasks/audit", params={"limit": 500})
        assert response.status_code == 200, response.text
        entries: list[dict[str, Any]] = response.json()
        return entries


def task_row(
    func_name: str,
    *,
    status: str = "failed",
    created_at: datetime | None = None,
    args: list[Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A task row as another process (or an earlier release) would have left it."""
    created = created_at or datetime.now(timezone.utc)
    row: dict[str, Any] = {
        "id": new_task_id(),
        "func_name": func_name,
        "status": status,
        "source": "manual",
        "executor": "async",
        "attempt": 0,
        "max_retries": 0,
        "run_at": created,
        "created_at": created,
        "updated_at": created,
        "finished_at": created if status not in ("pending", "running") else None,
        "error": "RuntimeError: earlier failure" if status == "failed" else None,
        "args": args if args is not None else [],
        "kwargs": {},
        "payload_format": "json",
        "lease_epoch": 1,
        # Every row names every column: an executemany takes its columns from the first.
        "retried_from": None,
    }
    row.update(extra)
    return row


class CardExpiredError(RuntimeError):
    """Never retried by billing.charge (its own failures are plain RuntimeErrors)."""


def register_jobs(
    manager: TaskManager,
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]],
    failing: set[str],
    gate: asyncio.Event,
) -> dict[str, Any]:
    async def flaky_job(order: int, customer: dict[str, Any], *, note: str = "") -> str:
        calls.append(("flaky_job", (order, customer), {"note": note}))
        if "flaky_job" in failing:
            raise RuntimeError(f"order {order} failed")
        return f"ok {order}"

    def charge(amount: int) -> None:  # registered under another name
        calls.append(("billing.charge", (amount,), {}))
        if "billing.charge" in failing:
            raise RuntimeError("card declined")

    async def quick_job(n: int = 0) -> None:
        if "quick_job" in failing:
            raise RuntimeError("quick failure")

    async def blocking_job() -> None:
        await gate.wait()

    async def hourly_report() -> None:
        return None

    manager.task(retries=2, delay=0.0, priority=4)(flaky_job)
    manager.task(
        name="billing.charge",
        retries=1,
        executor="thread",
        timeout=30,
        max_delay=60.0,
        jitter="equal",
        retry_on=(RuntimeError, ConnectionError),
        dont_retry_on=CardExpiredError,
    )(charge)
    manager.task()(quick_job)
    manager.task()(blocking_job)
    manager.schedule(every=3600, name="hourly_report")(hourly_report)
    return {
        "flaky_job": flaky_job,
        "billing.charge": charge,
        "quick_job": quick_job,
        "blocking_job": blocking_job,
    }


async def has_status(admin: Admin, task_id: str, status: str) -> bool:
    return await admin.status(task_id) == status
