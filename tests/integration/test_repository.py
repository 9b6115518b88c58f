"""Conformance suite for ``SqlTaskRepository``: the same claims on SQLite, PostgreSQL and MySQL.

Writes go through the pre-compiled driver-level statements of ``db/batch.py``
(or the inline ``sqlite3`` writer on SQLite files); reads go through
SQLAlchemy's types.  Every test here writes one way and reads the other, so
the two paths must agree on every dialect.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import sqlite3
from collections.abc import AsyncIterator, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from taskflow.db import sqlite_writer
from taskflow.db.errors import is_transient
from taskflow.db.mapping import insert_params, log_params
from taskflow.db.tables import task_logs_table, tasks_table
from taskflow.models import TaskLogEntry, TaskRecord, TaskStatus, utcnow
from taskflow.repository.base import BatchOutcome, TaskQuery, WriteBatch
from taskflow.repository.cursor import InvalidCursorError, encode_cursor
from taskflow.repository.sql import SqlTaskRepository
from taskflow.repository.stats import P95_RELATIVE_ERROR

T = tasks_table
L = task_logs_table

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
JSON_COLUMNS = ("tags", "args", "kwargs", "result", "extra")
TERMINAL = (TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.INTERRUPTED, TaskStatus.CANCELLED)


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


def assert_aware_utc(record: TaskRecord) -> None:
    for name in DATETIME_FIELDS:
        value = getattr(record, name)
        if value is not None:
            assert value.tzinfo is not None, f"{name} is naive: {value!r}"
            assert value.utcoffset() == timedelta(0), f"{name} is not UTC: {value!r}"


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


async def scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return await conn.scalar(text(sql), params)


@pytest.fixture
async def repo(engine: AsyncEngine) -> AsyncIterator[SqlTaskRepository]:
    repository = SqlTaskRepository(engine)
    yield repository
    # Not repository.close(): it disposes the fixture's engine, which would empty the pool
    # before the fixture's leak check (and dispose it twice).
    await repository.release()


# -- 1. round trip: fast write path, SQLAlchemy read path --------------------------


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


# -- 2. guarded updates --------------------------------------------------------------


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


async def test_guarded_update_applies_with_current_epoch(repo: SqlTaskRepository) -> None:
    original = make_record(1, lease_epoch=3, tags={"a": "b"}, priority=2)
    await repo.apply(WriteBatch(inserts=[original]))
    finished = running(
        original,
        1,
        status=TaskStatus.SUCCESS,
        end_time=BASE + timedelta(minutes=2, microseconds=55),
        duration_ms=60000.125,
        error="warning ✓",
        stacktrace="trace",
        result=["done", {"n": 1}],
        owner=None,
        lease_expires_at=None,
    )
    outcome = await repo.apply(WriteBatch(updates=[finished]))
    assert outcome.fenced == frozenset()
    loaded = await repo.get_task(original.task_id, with_logs=False)
    assert loaded == finished
    assert loaded is not None
    assert_aware_utc(loaded)
    assert loaded.lease_epoch == 3  # updates are guarded by the epoch, never change it


async def test_unchanged_update_is_not_fenced(repo: SqlTaskRepository) -> None:
    record = make_record(1, lease_epoch=1)
    await repo.apply(WriteBatch(inserts=[record]))
    # A row whose values do not change still matched its guard (MySQL counts "affected" rows).
    outcome = await repo.apply(WriteBatch(updates=[record]))
    assert outcome.fenced == frozenset()


async def test_stale_epoch_is_fenced_and_row_untouched(repo: SqlTaskRepository) -> None:
    original = make_record(1, lease_epoch=4, owner="instance-new")
    await repo.apply(WriteBatch(inserts=[original]))
    for stale_epoch in (3, 5, 0):
        zombie = running(original, 2, lease_epoch=stale_epoch, owner="instance-zombie")
        outcome = await repo.apply(WriteBatch(updates=[zombie]))
        assert outcome.fenced == frozenset({original.task_id})
        assert await repo.get_task(original.task_id, with_logs=False) == original


async def test_missing_task_update_is_fenced(repo: SqlTaskRepository) -> None:
    ghost = running(make_record(7), 1)
    outcome = await repo.apply(WriteBatch(updates=[ghost]))
    assert outcome.fenced == frozenset({ghost.task_id})
    assert await repo.get_task(ghost.task_id) is None


async def test_mixed_batch_applies_valid_and_reports_exactly_the_fenced(
    repo: SqlTaskRepository,
) -> None:
    originals = [make_record(n, lease_epoch=n % 3) for n in range(1, 11)]
    await repo.apply(WriteBatch(inserts=originals))
    stale = {2, 5, 9}
    updates = [
        running(r, n, lease_epoch=r.lease_epoch + (1 if n in stale else 0))
        for n, r in enumerate(originals, start=1)
    ]
    missing = [running(make_record(n), n) for n in (101, 102)]
    # Unsorted on purpose: the repository orders updates itself.
    batch = WriteBatch(updates=[*reversed(updates), missing[0], *missing[1:]])
    outcome = await repo.apply(batch)
    assert outcome.fenced == frozenset({tid(n) for n in (*stale, 101, 102)})
    assert outcome.rejected == frozenset()
    for n, (original, update) in enumerate(zip(originals, updates, strict=True), start=1):
        loaded = await repo.get_task(original.task_id, with_logs=False)
        assert loaded == (original if n in stale else update), n


async def test_inserts_updates_and_logs_in_one_batch(repo: SqlTaskRepository) -> None:
    old = make_record(1, lease_epoch=2)
    await repo.apply(WriteBatch(inserts=[old]))
    new = make_record(2)
    moved = running(old, 1, lease_epoch=2)
    entry = TaskLogEntry(new.task_id, 0, "info", "first", BASE)
    outcome = await repo.apply(WriteBatch(inserts=[new], updates=[moved], logs=[entry]))
    assert outcome.fenced == frozenset()
    assert await repo.get_task(old.task_id, with_logs=False) == moved
    assert await repo.get_task(new.task_id, with_logs=False) == new
    assert await repo.get_logs(new.task_id) == [entry]


async def test_refused_batch_applies_nothing(repo: SqlTaskRepository) -> None:
    """apply() is atomic: a row the database refuses rolls back the whole batch."""
    existing = make_record(1, lease_epoch=1)
    await repo.apply(WriteBatch(inserts=[existing]))
    good = make_record(2)
    refused_row = make_record(3)
    refused_row.func_name = None  # type: ignore[assignment]  # NOT NULL violation
    batch = WriteBatch(
        inserts=[good, refused_row],
        updates=[running(existing, 1, lease_epoch=1)],
        logs=[TaskLogEntry(existing.task_id, 0, "info", "never stored", BASE)],
    )
    with pytest.raises((DBAPIError, sqlite3.Error)) as refused:
        await repo.apply(batch)
    # A refused value is permanent: the writer must split the batch, not retry it forever.
    assert not is_transient(refused.value)
    assert await repo.get_task(good.task_id) is None
    assert await repo.get_task(existing.task_id, with_logs=False) == existing
    assert await repo.get_logs(existing.task_id) == []
    # The repository is usable afterwards (the failed transaction was rolled back).
    assert (await repo.apply(WriteBatch(inserts=[good]))).fenced == frozenset()
    assert await repo.get_task(good.task_id, with_logs=False) == good


async def test_reapplied_insert_is_a_no_op(repo: SqlTaskRepository) -> None:
    """A batch retried after its commit went through (connection lost after COMMIT)
    must not fail on its own rows, nor change them."""
    record = make_record(4, lease_epoch=1)
    await repo.apply(WriteBatch(inserts=[record]))
    moved_on = running(record, 1, lease_epoch=1)
    await repo.apply(WriteBatch(updates=[moved_on]))
    stale_copy = make_record(4, lease_epoch=1)
    outcome = await repo.apply(WriteBatch(inserts=[stale_copy, make_record(5)]))
    assert outcome == BatchOutcome()
    stored = await repo.get_task(record.task_id, with_logs=False)
    assert stored is not None and stored.status is TaskStatus.RUNNING
    assert await repo.get_task(make_record(5).task_id, with_logs=False) is not None


@pytest.mark.parametrize("backend_name", [pytest.param("sqlite", marks=pytest.mark.sqlite)])
async def test_sqlite_locked_database_is_a_transient_error(
    repo: SqlTaskRepository, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holding the write lock past the busy timeout must be retried, not
    treated as refused data (the writer would then mark every insert rejected)."""
    monkeypatch.setattr(sqlite_writer, "SQLITE_BUSY_TIMEOUT_MS", 50)
    database = engine.url.database
    assert database
    record = make_record(1)
    blocker = sqlite3.connect(database, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises((DBAPIError, sqlite3.Error)) as locked:
            await repo.apply(WriteBatch(inserts=[record]))
        blocker.execute("ROLLBACK")
    finally:
        blocker.close()
    assert "locked" in str(locked.value)
    assert is_transient(locked.value), f"{type(locked.value).__module__}.{locked.value!r}"
    # Once the lock is gone the same batch goes through.
    await repo.apply(WriteBatch(inserts=[record]))
    assert await repo.get_task(record.task_id, with_logs=False) == record


# -- 3. transition() -------------------------------------------------------------------


async def test_transition_guards_on_status_and_epoch(repo: SqlTaskRepository) -> None:
    record = make_record(1, lease_epoch=3, owner="instance-1")
    await repo.apply(WriteBatch(inserts=[record]))

    wrong_status = await repo.transition(
        record.task_id,
        expected_status=[TaskStatus.RUNNING],
        expected_epoch=3,
        status=TaskStatus.CANCELLED,
    )
    wrong_epoch = await repo.transition(
        record.task_id,
        expected_status=[TaskStatus.PENDING],
        expected_epoch=2,
        status=TaskStatus.CANCELLED,
    )
    missing = await repo.transition(
        tid(404),
        expected_status=[TaskStatus.PENDING],
        expected_epoch=None,
        status=TaskStatus.CANCELLED,
    )
    assert (wrong_status, wrong_epoch, missing) == (False, False, False)
    assert await repo.get_task(record.task_id, with_logs=False) == record

    before = utcnow()
    assert await repo.transition(
        record.task_id,
        expected_status=[TaskStatus.PENDING, TaskStatus.RUNNING],
        expected_epoch=3,
        status=TaskStatus.RUNNING,
    )
    after = utcnow()
    loaded = await repo.get_task(record.task_id, with_logs=False)
    assert loaded is not None
    assert loaded.status is TaskStatus.RUNNING
    assert loaded.lease_epoch == 4
    assert loaded.owner == "instance-1"  # only terminal statuses clear the lease
    assert loaded.end_time is None
    assert before <= loaded.updated_at <= after
    assert_aware_utc(loaded)

    # bump_epoch=False keeps the epoch; expected_epoch=None skips the epoch guard.
    assert await repo.transition(
        record.task_id,
        expected_status=[TaskStatus.RUNNING],
        expected_epoch=None,
        status=TaskStatus.PENDING,
        bump_epoch=False,
    )
    loaded = await repo.get_task(record.task_id, with_logs=False)
    assert loaded is not None
    assert (loaded.status, loaded.lease_epoch) == (TaskStatus.PENDING, 4)
    # The old epoch is now stale.
    assert not await repo.transition(
        record.task_id,
        expected_status=[TaskStatus.PENDING],
        expected_epoch=3,
        status=TaskStatus.RUNNING,
    )


@pytest.mark.parametrize("terminal", TERMINAL, ids=[s.value for s in TERMINAL])
async def test_transition_to_terminal_sets_finished_and_clears_owner(
    repo: SqlTaskRepository, terminal: TaskStatus
) -> None:
    record = make_record(
        1,
        status=TaskStatus.RUNNING,
        lease_epoch=7,
        owner="instance-1",
        lease_expires_at=BASE + timedelta(minutes=5),
        start_time=BASE,
    )
    await repo.apply(WriteBatch(inserts=[record]))
    before = utcnow()
    assert await repo.transition(
        record.task_id,
        expected_status=[TaskStatus.RUNNING],
        expected_epoch=7,
        status=terminal,
        error="stopped ✋",
    )
    after = utcnow()
    loaded = await repo.get_task(record.task_id, with_logs=False)
    assert loaded is not None
    assert loaded.status is terminal
    assert loaded.lease_epoch == 8
    assert loaded.owner is None
    assert loaded.lease_expires_at is None
    assert loaded.error == "stopped ✋"
    assert loaded.end_time is not None and before <= loaded.end_time <= after
    assert loaded.updated_at == loaded.end_time
    assert loaded.start_time == BASE
    assert_aware_utc(loaded)
    # Fenced out afterwards: the running instance's write with epoch 7 no longer applies.
    late = running(record, 3, lease_epoch=7, status=TaskStatus.SUCCESS)
    assert (await repo.apply(WriteBatch(updates=[late]))).fenced == {record.task_id}
    reloaded = await repo.get_task(record.task_id, with_logs=False)
    assert reloaded is not None and reloaded.status is terminal


async def test_concurrent_transitions_have_exactly_one_winner(repo: SqlTaskRepository) -> None:
    records = [make_record(n, status=TaskStatus.RUNNING, lease_epoch=1) for n in range(1, 6)]
    await repo.apply(WriteBatch(inserts=records))
    for record in records:
        results = await asyncio.gather(
            repo.transition(
                record.task_id,
                expected_status=[TaskStatus.RUNNING],
                expected_epoch=1,
                status=TaskStatus.CANCELLED,
            ),
            repo.transition(
                record.task_id,
                expected_status=[TaskStatus.RUNNING],
                expected_epoch=1,
                status=TaskStatus.SUCCESS,
            ),
        )
        assert sorted(results) == [False, True], results
        winner = TaskStatus.CANCELLED if results[0] else TaskStatus.SUCCESS
        loaded = await repo.get_task(record.task_id, with_logs=False)
        assert loaded is not None
        assert loaded.status is winner
        assert loaded.lease_epoch == 2  # bumped once, by the winner only


# -- 4. logs ---------------------------------------------------------------------------


async def test_logs_order_rendering_and_retry_separators(repo: SqlTaskRepository) -> None:
    record = make_record(1, retries_used=4)
    other = make_record(2)
    at = datetime(2024, 5, 6, 7, 8, 9, 987654, tzinfo=timezone.utc)
    first = [
        TaskLogEntry(record.task_id, 0, "info", "starting ✓", at, {"step": 1, "x": ["ü"]}),
        TaskLogEntry(record.task_id, 0, "warning", "slow", at + timedelta(seconds=1)),
        TaskLogEntry(other.task_id, 0, "info", "other task", at),
    ]
    second = [
        TaskLogEntry(record.task_id, 1, "error", "retrying: boom", at + timedelta(minutes=1)),
        # Attempt 2 wrote nothing; attempt 3 did.
        TaskLogEntry(
            record.task_id,
            3,
            "debug",
            "line\nwith newline",
            datetime(2024, 5, 6, 9, 0, 0, 1, tzinfo=PLUS_2),
        ),
    ]
    await repo.apply(WriteBatch(inserts=[record, other], logs=first))
    await repo.apply(WriteBatch(logs=second))

    entries = await repo.get_logs(record.task_id)
    expected = [first[0], first[1], *second]
    assert entries == expected
    for entry in entries:
        assert entry.created_at.utcoffset() == timedelta(0)
    assert entries[0].created_at.microsecond == 987654
    assert entries[1].extra == {}

    loaded = await repo.get_task(record.task_id)
    assert loaded is not None
    assert loaded.logs == [
        "2024-05-06T07:08:09 starting ✓",
        "2024-05-06T07:08:10 slow",
        "--- Retry 1 ---",
        "2024-05-06T07:09:09 retrying: boom",
        "--- Retry 2 ---",
        "--- Retry 3 ---",
        "2024-05-06T07:00:00 line\nwith newline",
        "--- Retry 4 ---",
    ]
    other_loaded = await repo.get_task(other.task_id)
    assert other_loaded is not None
    assert other_loaded.logs == ["2024-05-06T07:08:09 other task"]
    assert await repo.get_logs(tid(404)) == []
    no_logs = await repo.get_task(record.task_id, with_logs=False)
    assert no_logs is not None and no_logs.logs == []


async def test_logs_keep_write_order_with_identical_timestamps(repo: SqlTaskRepository) -> None:
    record = make_record(1)
    await repo.apply(WriteBatch(inserts=[record]))
    for chunk in range(3):
        await repo.apply(
            WriteBatch(
                logs=[
                    TaskLogEntry(record.task_id, 0, "info", f"line {chunk * 10 + i:02d}", BASE)
                    for i in range(10)
                ]
            )
        )
    entries = await repo.get_logs(record.task_id)
    assert [e.message for e in entries] == [f"line {i:02d}" for i in range(30)]


# -- 5. list_tasks ---------------------------------------------------------------------

FUNCS = ("send_email", "resize_image", "sync_crm")
SOURCES = ("manual", "scheduled", "retry", "requeue")
STATUSES = tuple(TaskStatus)
SAME_MOMENT = datetime(2024, 6, 1, 12, 0, 0, 250000, tzinfo=timezone.utc)
LIST_SIZE = 70


def listing_records() -> list[TaskRecord]:
    """70 tasks: 42 of them share one created_at, the rest are spread around it."""
    records = []
    for n in range(1, LIST_SIZE + 1):
        if n % 5 in (1, 3):  # 28 spread out: before and after the shared moment
            offset = timedelta(seconds=(n - 35) * 60, microseconds=n)
            created = SAME_MOMENT + offset
        else:
            created = SAME_MOMENT
        records.append(
            make_record(
                n,
                created_at=created,
                func_name=FUNCS[n % 3],
                source=SOURCES[n % 4],
                status=STATUSES[n % 6],
            )
        )
    return records


def newest_first(records: Iterable[TaskRecord]) -> list[str]:
    ordered = sorted(records, key=lambda r: (r.created_at, r.task_id), reverse=True)
    return [r.task_id for r in ordered]


async def walk(repo: SqlTaskRepository, query: TaskQuery) -> tuple[list[str], int]:
    ids: list[str] = []
    pages = 0
    cursor = None
    while True:
        page = await repo.list_tasks(dataclasses.replace(query, cursor=cursor))
        pages += 1
        assert len(page.items) <= query.limit
        ids.extend(r.task_id for r in page.items)
        if page.next_cursor is None:
            return ids, pages
        assert len(page.items) == query.limit
        cursor = page.next_cursor
        assert pages <= LIST_SIZE + 1, "pagination does not terminate"


@pytest.fixture
async def listed(repo: SqlTaskRepository) -> list[TaskRecord]:
    records = listing_records()
    await repo.apply(WriteBatch(inserts=records[::2]))
    await repo.apply(WriteBatch(inserts=records[1::2]))
    return records


async def test_list_newest_first_with_list_columns(
    repo: SqlTaskRepository, listed: list[TaskRecord]
) -> None:
    page = await repo.list_tasks(TaskQuery(limit=LIST_SIZE))
    assert page.next_cursor is None
    assert [r.task_id for r in page.items] == newest_first(listed)
    by_id = {r.task_id: r for r in listed}
    for item in page.items:
        # The list leaves out payload and stack trace; everything else is the stored row.
        assert item == by_id[item.task_id]
        assert_aware_utc(item)
    assert sum(1 for r in listed if r.created_at == SAME_MOMENT) == 42


@pytest.mark.parametrize("page_size", [1, 7, 50])
async def test_keyset_pagination_walks_every_row_once(
    repo: SqlTaskRepository, listed: list[TaskRecord], page_size: int
) -> None:
    ids, pages = await walk(repo, TaskQuery(limit=page_size))
    assert len(ids) == len(set(ids)) == LIST_SIZE
    assert ids == newest_first(listed)
    assert pages == -(-LIST_SIZE // page_size)  # no trailing empty page when it divides evenly

    wanted = [TaskStatus.PENDING, TaskStatus.SUCCESS, TaskStatus.CANCELLED]
    ids, _ = await walk(repo, TaskQuery(limit=page_size, status=wanted))
    assert ids == newest_first(r for r in listed if r.status in wanted)


async def test_cursor_of_the_last_shared_timestamp_row_continues_correctly(
    repo: SqlTaskRepository, listed: list[TaskRecord]
) -> None:
    order = newest_first(listed)
    by_id = {r.task_id: r for r in listed}
    for position in (0, 20, 41, 50, LIST_SIZE - 2):
        last = by_id[order[position]]
        cursor = encode_cursor(last.created_at, last.task_id)
        page = await repo.list_tasks(TaskQuery(limit=5, cursor=cursor))
        assert [r.task_id for r in page.items] == order[position + 1 : position + 6]


async def test_list_filters(repo: SqlTaskRepository, listed: list[TaskRecord]) -> None:
    async def ids(**filters: Any) -> list[str]:
        page = await repo.list_tasks(TaskQuery(limit=500, **filters))
        assert page.next_cursor is None
        return [r.task_id for r in page.items]

    several = [TaskStatus.FAILED, TaskStatus.INTERRUPTED, TaskStatus.CANCELLED]
    assert await ids(status=several) == newest_first(r for r in listed if r.status in several)
    assert await ids(status=[TaskStatus.RUNNING]) == newest_first(
        r for r in listed if r.status is TaskStatus.RUNNING
    )
    assert await ids(func_name="sync_crm") == newest_first(
        r for r in listed if r.func_name == "sync_crm"
    )
    assert await ids(func_name="nope") == []
    assert await ids(source="scheduled") == newest_first(
        r for r in listed if r.source == "scheduled"
    )

    # created_since is inclusive, created_until exclusive, both aware (any zone).
    since = SAME_MOMENT
    until = SAME_MOMENT + timedelta(seconds=(41 - 35) * 60, microseconds=41)  # row 41's moment
    assert await ids(created_since=since) == newest_first(
        r for r in listed if r.created_at >= since
    )
    assert await ids(created_until=since) == newest_first(r for r in listed if r.created_at < since)
    window = await ids(created_since=since.astimezone(PLUS_2), created_until=until)
    assert window == newest_first(r for r in listed if since <= r.created_at < until)
    assert tid(41) not in window and len(window) > 42

    combined = await ids(
        status=[TaskStatus.PENDING, TaskStatus.SUCCESS],
        func_name="send_email",
        created_since=since,
    )
    assert combined == newest_first(
        r
        for r in listed
        if r.status in (TaskStatus.PENDING, TaskStatus.SUCCESS)
        and r.func_name == "send_email"
        and r.created_at >= since
    )


async def test_list_search_substring_of_id_or_func_name(
    repo: SqlTaskRepository, listed: list[TaskRecord]
) -> None:
    async def ids(search: str) -> list[str]:
        page = await repo.list_tasks(TaskQuery(limit=500, search=search))
        return [r.task_id for r in page.items]

    assert await ids("resize") == newest_first(r for r in listed if "resize" in r.func_name)
    assert await ids("crm") == newest_first(r for r in listed if r.func_name == "sync_crm")
    assert await ids(tid(45)[-6:]) == [tid(45)]  # a piece of one id
    assert await ids("zzz") == []
    # Characters that are LIKE wildcards are searched for literally.
    assert await ids("send_email") == newest_first(r for r in listed if r.func_name == "send_email")
    assert await ids("c_r") == []
    assert await ids("%") == []


async def test_list_search_is_case_insensitive_on_every_backend(
    repo: SqlTaskRepository, listed: list[TaskRecord]
) -> None:
    # SQLite's and MySQL's LIKE ignore ASCII case; the same search must find the same rows.
    page = await repo.list_tasks(TaskQuery(limit=500, search="RESIZE"))
    assert [r.task_id for r in page.items] == newest_first(
        r for r in listed if r.func_name == "resize_image"
    )


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        "Zm9v",  # "foo": no separator
        encode_cursor(datetime(2024, 1, 1), tid(1)),  # naive: not one of ours
        base64.urlsafe_b64encode("😂|not-a-date".encode()).decode(),
        base64.urlsafe_b64encode(b"\xff\xfe|x").decode(),  # not UTF-8
        "é",
    ],
)
async def test_invalid_cursor_raises(repo: SqlTaskRepository, cursor: str) -> None:
    with pytest.raises(InvalidCursorError):
        await repo.list_tasks(TaskQuery(cursor=cursor))


# -- 6. metrics ------------------------------------------------------------------------


def nearest_rank_p95(values: list[float]) -> float:
    ordered = sorted(values)
    rank = -(-95 * len(ordered) // 100)  # ceil(0.95 n), 1-based
    return ordered[rank - 1]


def p95_close(expected_ms: float) -> Any:
    """The roll-up's p95 comes from a duration histogram: within half a bucket (< 1/32)."""
    return pytest.approx(expected_ms / 1000, rel=P95_RELATIVE_ERROR)


async def test_metrics_empty(repo: SqlTaskRepository) -> None:
    metrics = await repo.metrics()
    assert metrics.total == 0
    assert metrics.success_rate is None
    assert metrics.avg_duration_seconds is None
    assert metrics.by_function == []


async def test_metrics_counts_rates_and_durations(repo: SqlTaskRepository) -> None:
    records: list[TaskRecord] = []
    n = 0

    def add(func_name: str, status: TaskStatus, duration_ms: float | None = None) -> None:
        nonlocal n
        n += 1
        records.append(make_record(n, func_name=func_name, status=status, duration_ms=duration_ms))

    # alpha: 37 finished runs with scattered, distinct durations, plus unfinished ones.
    alpha = [round(((i * 37) % 101) * 13.25 + i / 8, 3) for i in range(37)]
    assert len(set(alpha)) == 37
    for i, ms in enumerate(alpha):
        add("alpha", TaskStatus.FAILED if i % 4 == 0 else TaskStatus.SUCCESS, ms)
    for _ in range(3):
        add("alpha", TaskStatus.RUNNING)
    add("alpha", TaskStatus.PENDING)
    # Interrupted and cancelled runs have an outcome but are not finished runs.
    add("alpha", TaskStatus.INTERRUPTED, 999_999.0)
    add("alpha", TaskStatus.CANCELLED, 0.5)
    beta = [1500.0]
    add("beta", TaskStatus.SUCCESS, beta[0])
    add("beta", TaskStatus.CANCELLED)
    gamma = [250.0, 40.5]
    add("gamma", TaskStatus.SUCCESS, gamma[0])
    add("gamma", TaskStatus.FAILED, gamma[1])
    add("gamma", TaskStatus.INTERRUPTED)
    add("gamma", TaskStatus.PENDING)
    add("delta", TaskStatus.PENDING)
    add("delta", TaskStatus.RUNNING)
    await repo.apply(WriteBatch(inserts=records))

    metrics = await repo.metrics()
    expected_counts = {s.value: sum(1 for r in records if r.status is s) for s in TaskStatus}
    assert {k: v for k, v in metrics.counts.items() if v} == {
        k: v for k, v in expected_counts.items() if v
    }
    assert expected_counts["cancelled"] == 2 and expected_counts["interrupted"] == 2
    assert metrics.total == len(records) == 51
    terminal = sum(1 for r in records if r.status.is_terminal)
    success = expected_counts["success"]
    assert terminal == len(records) - 7  # pending and running have no outcome yet
    assert metrics.success_rate == pytest.approx(success / terminal)
    finished = alpha + beta + gamma
    assert metrics.avg_duration_seconds == pytest.approx(sum(finished) / len(finished) / 1000)
    data = metrics.to_dict()
    assert data["cancelled"] == 2 and data["interrupted"] == 2 and data["total"] == 51

    by_name = {f.func_name: f for f in metrics.by_function}
    assert [f.func_name for f in metrics.by_function] == ["alpha", "beta", "delta", "gamma"]
    for name, durations in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        fm = by_name[name]
        rows = [r for r in records if r.func_name == name]
        assert fm.total == len(rows), name
        assert fm.success == sum(1 for r in rows if r.status is TaskStatus.SUCCESS), name
        assert fm.failed == sum(1 for r in rows if r.status is TaskStatus.FAILED), name
        assert fm.running == sum(1 for r in rows if r.status is TaskStatus.RUNNING), name
        assert fm.avg_duration == pytest.approx(sum(durations) / len(durations) / 1000), name
        assert fm.min_duration == pytest.approx(min(durations) / 1000), name
        assert fm.max_duration == pytest.approx(max(durations) / 1000), name
        assert fm.p95_duration == p95_close(nearest_rank_p95(durations)), name
    assert (by_name["alpha"].total, by_name["alpha"].running) == (43, 3)
    assert by_name["alpha"].p95_duration == p95_close(sorted(alpha)[35])
    # A bucket holding one task reports it exactly.
    assert by_name["beta"].p95_duration == pytest.approx(1.5)
    assert by_name["gamma"].p95_duration == pytest.approx(0.25)  # rank ceil(1.9) = 2: the max
    assert by_name["gamma"].success_rate == pytest.approx(0.5)
    delta = by_name["delta"]
    assert (delta.total, delta.success, delta.failed, delta.running) == (2, 0, 0, 1)
    assert (delta.avg_duration, delta.min_duration, delta.max_duration, delta.p95_duration) == (
        None,
        None,
        None,
        None,
    )


@pytest.mark.parametrize("count", [1, 2, 19, 20, 21, 37, 100, 1000])
async def test_metrics_p95_is_nearest_rank(repo: SqlTaskRepository, count: int) -> None:
    durations = [float((i * 7919) % 1009) + 0.5 for i in range(count)]
    records = [
        make_record(i + 1, func_name="f", status=TaskStatus.SUCCESS, duration_ms=ms)
        for i, ms in enumerate(durations)
    ]
    await repo.apply(WriteBatch(inserts=records))
    (fm,) = (await repo.metrics()).by_function
    assert fm.p95_duration == p95_close(nearest_rank_p95(durations))
    assert (fm.min_duration, fm.max_duration) == (
        pytest.approx(min(durations) / 1000),
        pytest.approx(max(durations) / 1000),
    )


# -- 7. the writer's real batch sizes --------------------------------------------------


async def test_batch_of_two_thousand_each(repo: SqlTaskRepository, engine: AsyncEngine) -> None:
    size = 2000
    existing = [make_record(n, lease_epoch=1, args=(n,), kwargs={"n": n}) for n in range(size)]
    await repo.apply(WriteBatch(inserts=existing))

    fresh = [
        make_record(
            size + n,
            args=("x" * 50, n),
            tags={"batch": "big"},
        )
        for n in range(size)
    ]
    stale = set(range(0, size, 199))
    updates = [
        running(r, 1, lease_epoch=2 if n in stale else 1, result={"n": n})
        for n, r in enumerate(existing)
    ]
    logs = [
        TaskLogEntry(fresh[n % size].task_id, 0, "info", f"log {n}", BASE, {"n": n})
        for n in range(size)
    ]
    batch = WriteBatch(inserts=fresh, updates=updates, logs=logs)
    assert len(batch) == 3 * size
    outcome = await repo.apply(batch)
    assert outcome.fenced == frozenset(tid(n) for n in stale)

    assert await scalar(engine, "SELECT COUNT(*) FROM taskflow_tasks") == 2 * size
    assert await scalar(
        engine, "SELECT COUNT(*) FROM taskflow_tasks WHERE status = 'running'"
    ) == size - len(stale)
    assert await scalar(engine, "SELECT COUNT(*) FROM taskflow_task_logs") == size
    async with engine.connect() as conn:
        per_owner = (await conn.execute(select(T.c.owner, func.count()).group_by(T.c.owner))).all()
    assert dict(tuple(r) for r in per_owner) == {
        None: size + len(stale),
        "instance-1": size - len(stale),
    }
    assert await repo.get_task(tid(5), with_logs=False) == updates[5]
    assert await repo.get_task(tid(199), with_logs=False) == existing[199]
    assert await repo.get_task(tid(size + 1999), with_logs=False) == fresh[1999]
    assert await repo.get_logs(fresh[7].task_id) == [logs[7]]
