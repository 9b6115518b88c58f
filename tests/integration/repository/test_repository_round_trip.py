"""``SqlTaskRepository`` round trip: fast write path, SQLAlchemy read path.

They run on SQLite, PostgreSQL and MySQL.

Writes go through the pre-compiled driver-level statements of ``repository/sql/batch.py``
(or the inline ``sqlite3`` writer on SQLite files); reads go through
SQLAlchemy's types.  Every test here writes one way and reads the other, so
the two paths must agree on every dialect.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from taskflow.db.tables import task_logs_table
from taskflow.models import TaskLogEntry, TaskRecord, TaskStatus
from taskflow.repository.base import WriteBatch
from taskflow.repository.sql import SqlTaskRepository
from taskflow.repository.sql.mapping import insert_params, log_params
from tests.integration.repository.records import (
    PLUS_2,
    T,
    assert_aware_utc,
    make_record,
    scalar,
    tid,
)

L = task_logs_table


JSON_COLUMNS = ("tags", "args", "kwargs", "result", "extra")


def full_record(n: int, **fields: Any) -> TaskRecord:
    """A record with every field populated, unicode and nested JSON included."""
    values: dict[str, Any] = {
        "func_name": "build_report",
        "status": TaskStatus.FAILED,
        "args": ("héllo ✓", 3, [1, {"deep": [True, None, 2.5, 2**60]}], "日本語"),
        "kwargs": {"name": "Zoë 🚀", "opts": {"nested": {"list": [1, "二", {"k": None}]}}},
        "created_at": datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc),
        "start_time": datetime(2024, 5, 6, 7, 8, 10, 1, tzinfo=timezone.utc),
        "end_time": datetime(2024, 5, 6, 7, 8, 11, 999999, tzinfo=timezone.utc),
        "retries_used": 2,
        "error": "ValueError: bad ünïcode 💥",
        "stacktrace": 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: ✗',
        "idempotency_key": "order-42-ключ",
        "tags": {"tenant": "acmé", "kind": "report"},
        "source": "retry",
        "priority": 7,
        "executor": "thread",
        "max_retries": 3,
        "run_at": datetime(2024, 5, 6, 7, 8, 9, 500001, tzinfo=timezone.utc),
        "updated_at": datetime(2024, 5, 6, 7, 8, 12, 654321, tzinfo=timezone.utc),
        "duration_ms": 1234.567,
        "result": {"rows": [1, 2, 3], "msg": "ok ✓", "nested": {"a": None, "b": [{"c": 1.25}]}},
        "args_stored": True,
        "payload": b"\x80\x04\x95\x00\xff\x00binary\xfe",
        "payload_format": "pickle",
        "owner": "instance-1",
        "lease_epoch": 5,
        "lease_expires_at": datetime(2024, 5, 6, 7, 9, 0, 42, tzinfo=timezone.utc),
        "retried_from": tid(9999),
        "schedule_name": "nightly",
        # Given in another zone: stored and read back as the same instant in UTC.
        "scheduled_for": datetime(2024, 5, 6, 9, 8, 0, 7, tzinfo=PLUS_2),
    }
    values.update(fields)
    return make_record(n, **values)


def normalized(row: dict[str, Any]) -> dict[str, Any]:
    """A raw row with JSON text parsed (the two paths may space JSON differently)."""
    out = dict(row)
    for name in JSON_COLUMNS:
        if out.get(name) is not None and isinstance(out[name], str | bytes):
            out[name] = json.loads(out[name])
    return out


async def raw_row(engine: AsyncEngine, table: str, where: str, **params: Any) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (await conn.execute(text(f"SELECT * FROM {table} WHERE {where}"), params)).first()
    assert row is not None
    return dict(row._mapping)


async def test_round_trip_every_field(repo: SqlTaskRepository) -> None:
    record = full_record(1)
    outcome = await repo.apply(WriteBatch(inserts=[record]))
    assert outcome.fenced == frozenset()
    assert outcome.rejected == frozenset()

    loaded = await repo.get_task(record.task_id, with_logs=False)
    assert loaded is not None
    assert loaded == record
    for name in dataclasses.fields(TaskRecord):
        assert getattr(loaded, name.name) == getattr(record, name.name), name.name
    assert_aware_utc(loaded)
    assert loaded.scheduled_for == datetime(2024, 5, 6, 7, 8, 0, 7, tzinfo=timezone.utc)
    assert loaded.created_at.microsecond == 123456
    assert loaded.start_time is not None and loaded.start_time.microsecond == 1
    assert loaded.end_time is not None and loaded.end_time.microsecond == 999999
    assert loaded.args == record.args and isinstance(loaded.args, tuple)
    assert loaded.payload == b"\x80\x04\x95\x00\xff\x00binary\xfe"
    assert loaded.encrypted_payload is None  # only "fernet" payloads are encrypted ones
    assert await repo.get_task(tid(404)) is None


async def test_fernet_payload_reads_back_as_encrypted_payload(repo: SqlTaskRepository) -> None:
    token = b"gAAAAABm-fernet-token=="
    record = make_record(1, payload=token, payload_format="fernet", args_stored=False)
    await repo.apply(WriteBatch(inserts=[record]))
    loaded = await repo.get_task(record.task_id, with_logs=False)
    assert loaded is not None
    assert loaded.payload == token
    assert loaded.encrypted_payload == token
    assert loaded.payload_format == "fernet"


async def test_args_not_stored_are_sql_null(repo: SqlTaskRepository, engine: AsyncEngine) -> None:
    hidden = make_record(
        1,
        args=("secret",),
        kwargs={"token": "x"},
        args_stored=False,
    )
    empty = make_record(2, args=(), kwargs={}, args_stored=True)
    await repo.apply(WriteBatch(inserts=[hidden, empty]))

    loaded = await repo.get_task(hidden.task_id, with_logs=False)
    assert loaded == dataclasses.replace(hidden, args=(), kwargs={})
    assert loaded is not None and loaded.args_stored is False
    loaded_empty = await repo.get_task(empty.task_id, with_logs=False)
    assert loaded_empty == empty
    assert loaded_empty is not None and loaded_empty.args_stored is True

    async with repo.engine.connect() as conn:
        core = await conn.execute(select(T.c.args, T.c.kwargs).where(T.c.id == hidden.task_id))
        assert core.one() == (None, None)
    # SQL NULL, not a JSON 'null': plain SQL must see IS NULL.
    null_ids = await scalar(
        engine, "SELECT COUNT(*) FROM taskflow_tasks WHERE args IS NULL AND kwargs IS NULL"
    )
    assert null_ids == 1
    assert (
        await scalar(engine, "SELECT id FROM taskflow_tasks WHERE args IS NULL AND kwargs IS NULL")
        == hidden.task_id
    )
    assert (
        await scalar(
            engine, "SELECT COUNT(*) FROM taskflow_tasks WHERE tags IS NULL AND result IS NULL"
        )
        == 2
    )


async def test_plain_sql_sees_status_text_and_created_order(
    repo: SqlTaskRepository, engine: AsyncEngine
) -> None:
    # Inserted out of order; timestamps straddle second, minute and microsecond boundaries.
    moments = {
        1: datetime(2024, 5, 6, 10, 0, 0, 1, tzinfo=timezone.utc),
        2: datetime(2024, 5, 6, 9, 59, 59, 999999, tzinfo=timezone.utc),
        3: datetime(2024, 5, 6, 10, 0, 0, 0, tzinfo=timezone.utc),
        4: datetime(2024, 5, 6, 12, 0, 0, 5, tzinfo=PLUS_2),  # 10:00:00.000005 UTC
        5: datetime(2023, 12, 31, 23, 59, 59, 500000, tzinfo=timezone.utc),
    }
    statuses = {
        1: TaskStatus.FAILED,
        2: TaskStatus.SUCCESS,
        3: TaskStatus.CANCELLED,
        4: TaskStatus.RUNNING,
        5: TaskStatus.INTERRUPTED,
    }
    records = [
        make_record(n, created_at=moments[n], status=statuses[n], func_name=f"job_{n}")
        for n in (4, 1, 5, 3, 2)
    ]
    await repo.apply(WriteBatch(inserts=records))

    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT id, func_name, status FROM taskflow_tasks ORDER BY created_at")
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        (tid(n), f"job_{n}", statuses[n].value) for n in (5, 2, 3, 1, 4)
    ]
    assert (
        await scalar(engine, "SELECT func_name FROM taskflow_tasks WHERE status = 'cancelled'")
        == "job_3"
    )
    assert (
        await scalar(
            engine, "SELECT COUNT(*) FROM taskflow_tasks WHERE status IN ('failed', 'interrupted')"
        )
        == 2
    )


async def test_fast_path_stores_what_sqlalchemy_types_store(
    repo: SqlTaskRepository, engine: AsyncEngine
) -> None:
    """The pre-compiled writer and SQLAlchemy's own bind processing give the same raw rows."""
    # No payload: binary columns have their own round-trip tests, and a driver that cannot
    # bind bytes must not hide what this test says about every other column.
    fast = full_record(1, payload=None)
    reference = full_record(2, payload=None, schedule_name="nightly-ref")
    log_at = datetime(2024, 5, 6, 7, 8, 9, 700001, tzinfo=timezone.utc)
    fast_log = TaskLogEntry(fast.task_id, 1, "warning", "über ✓", log_at, {"k": ["v", 1]})
    ref_log = dataclasses.replace(fast_log, task_id=reference.task_id, entry_id=tid(99))

    await repo.apply(WriteBatch(inserts=[fast], logs=[fast_log]))
    async with engine.begin() as conn:
        await conn.execute(insert(T).values(insert_params(reference)))
        await conn.execute(insert(L).values(log_params(ref_log)))

    fast_row = normalized(await raw_row(engine, "taskflow_tasks", "id = :i", i=fast.task_id))
    ref_row = normalized(await raw_row(engine, "taskflow_tasks", "id = :i", i=reference.task_id))
    for key in ("id", "schedule_name"):
        del fast_row[key], ref_row[key]
    assert fast_row == ref_row
    # The stored form itself, as plain SQL sees it (not only equal to each other).
    assert fast_row["status"] == "failed"
    for column, value in (
        ("error", fast.error),
        ("stacktrace", fast.stacktrace),
        ("idempotency_key", fast.idempotency_key),
        ("func_name", fast.func_name),
        ("payload_format", "pickle"),
        ("lease_epoch", 5),
        ("attempt", 2),
    ):
        assert fast_row[column] == value, column
    assert fast_row["args"] == ["héllo ✓", 3, [1, {"deep": [True, None, 2.5, 2**60]}], "日本語"]

    fast_log_row = normalized(
        await raw_row(engine, "taskflow_task_logs", "task_id = :i", i=fast.task_id)
    )
    ref_log_row = normalized(
        await raw_row(engine, "taskflow_task_logs", "task_id = :i", i=reference.task_id)
    )
    for key in ("id", "task_id"):
        del fast_log_row[key], ref_log_row[key]
    assert fast_log_row == ref_log_row

    # And SQLAlchemy reads both the same way.
    loaded_ref = await repo.get_task(reference.task_id, with_logs=False)
    assert loaded_ref == reference
