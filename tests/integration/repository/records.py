"""Records and raw-SQL helpers shared by the ``SqlTaskRepository`` tests."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from taskflow.db.tables import tasks_table
from taskflow.models import TaskRecord, TaskStatus

T = tasks_table


BASE = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
PLUS_2 = timezone(timedelta(hours=2))
DATETIME_FIELDS = (
    "created_at",
    "start_time",
    "end_time",
    "run_at",
    "updated_at",
    "lease_expires_at",
    "scheduled_for",
)


def tid(n: int) -> str:
    """A deterministic task id; ids of one shape sort the same in Python and in every database."""
    return f"{n:08x}-0000-7000-8000-{n:012x}"


def make_record(n: int, **fields: Any) -> TaskRecord:
    """A pending task whose timestamps default to ``BASE + n seconds + n microseconds``."""
    created = fields.pop("created_at", BASE + timedelta(seconds=n, microseconds=n))
    values: dict[str, Any] = {
        "task_id": tid(n),
        "func_name": "send_email",
        "status": TaskStatus.PENDING,
        "created_at": created,
        "run_at": created,
        "updated_at": created,
    }
    values.update(fields)
    return TaskRecord(**values)


def assert_aware_utc(record: TaskRecord) -> None:
    for name in DATETIME_FIELDS:
        value = getattr(record, name)
        if value is not None:
            assert value.tzinfo is not None, f"{name} is naive: {value!r}"
            assert value.utcoffset() == timedelta(0), f"{name} is not UTC: {value!r}"


async def scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return await conn.scalar(text(sql), params)


def running(record: TaskRecord, n: int, **fields: Any) -> TaskRecord:
    """The record moved on by its owner: every mutable column changes."""
    values: dict[str, Any] = {
        "status": TaskStatus.RUNNING,
        "executor": "async",
        "retries_used": 1,
        "run_at": BASE + timedelta(minutes=n, microseconds=11),
        "updated_at": BASE + timedelta(minutes=n, microseconds=22),
        "start_time": BASE + timedelta(minutes=n, microseconds=33),
        "owner": f"instance-{n}",
        "lease_expires_at": BASE + timedelta(minutes=n + 1, microseconds=44),
    }
    values.update(fields)
    return dataclasses.replace(record, **values)
