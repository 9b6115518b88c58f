"""``SqlTaskRepository.apply``: guarded updates fenced by epoch; the writer's batch sizes.

They run on SQLite, PostgreSQL and MySQL.
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from taskflow.models import TaskLogEntry, TaskStatus
from taskflow.repository.base import BatchOutcome, WriteBatch
from taskflow.repository.sql import SqlTaskRepository, sqlite_writer
from taskflow.repository.sql.errors import is_transient
from tests.integration.repository.records import (
    BASE,
    T,
    assert_aware_utc,
    make_record,
    running,
    scalar,
    tid,
)

# -- guarded updates --------------------------------------------------------------


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


# -- the writer's real batch sizes --------------------------------------------------


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
