"""apply(): a write batch's inserts, guarded updates and log lines, all or nothing."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from taskflow.models import TaskLogEntry, TaskStatus
from taskflow.repository.base import BatchOutcome, TaskRepository, WriteBatch
from tests.conformance.records import BASE, at, held_by, make_record, tid


async def test_inserted_rows_read_back_as_written(backend: TaskRepository) -> None:
    record = make_record(
        1,
        args=("héllo ✓", 3, [1, {"deep": [True, None, 2.5]}]),
        kwargs={"name": "Zoë 🚀", "opts": {"n": 1}},
        tags={"tenant": "acmé"},
        priority=7,
        executor="thread",
        max_retries=3,
        idempotency_key=None,
        payload=b"\x80\x04\x95\x00\xff",
        payload_format="pickle",
    )
    outcome = await backend.apply(WriteBatch(inserts=[record]))
    assert outcome == BatchOutcome()
    loaded = await backend.get_task(record.task_id, with_logs=False)
    assert loaded == record
    assert loaded is not None and loaded.created_at.utcoffset() == timedelta(0)
    assert loaded.created_at.microsecond == BASE.microsecond


async def test_unknown_task_reads_as_none(backend: TaskRepository) -> None:
    assert await backend.get_task(tid(404)) is None
    assert await backend.get_logs(tid(404)) == []


async def test_inserts_updates_and_logs_land_together(backend: TaskRepository) -> None:
    old = make_record(1, lease_epoch=2)
    await backend.apply(WriteBatch(inserts=[old]))
    new = make_record(2)
    moved = held_by(old, "instance-a", until=at(60), lease_epoch=2)
    lines = [
        TaskLogEntry(new.task_id, 0, "info", "first", at(3)),
        TaskLogEntry(new.task_id, 0, "warning", "second", at(3)),
    ]
    outcome = await backend.apply(WriteBatch(inserts=[new], updates=[moved], logs=lines))
    assert outcome == BatchOutcome()
    assert await backend.get_task(old.task_id, with_logs=False) == moved
    assert await backend.get_task(new.task_id, with_logs=False) == new
    assert [entry.message for entry in await backend.get_logs(new.task_id)] == ["first", "second"]
    with_logs = await backend.get_task(new.task_id)
    assert with_logs is not None and len(with_logs.logs) == 2
    assert with_logs.logs[0].endswith("first")


async def test_reapplied_insert_keeps_the_stored_row(backend: TaskRepository) -> None:
    """A batch retried after its commit went through must neither fail nor rewind its rows."""
    record = make_record(1, lease_epoch=1)
    await backend.apply(WriteBatch(inserts=[record]))
    moved_on = held_by(record, "instance-a", until=at(60), lease_epoch=1)
    await backend.apply(WriteBatch(updates=[moved_on]))
    outcome = await backend.apply(WriteBatch(inserts=[record, make_record(2)]))
    assert outcome == BatchOutcome()
    assert await backend.get_task(record.task_id, with_logs=False) == moved_on
    assert await backend.get_task(tid(2), with_logs=False) == make_record(2)


async def test_update_with_current_epoch_applies_and_keeps_the_epoch(
    backend: TaskRepository,
) -> None:
    record = make_record(1, lease_epoch=3)
    await backend.apply(WriteBatch(inserts=[record]))
    done = dataclasses.replace(
        record,
        status=TaskStatus.SUCCESS,
        end_time=at(9),
        duration_ms=1234.5,
        result={"rows": [1, 2]},
        retries_used=1,
    )
    assert await backend.apply(WriteBatch(updates=[done])) == BatchOutcome()
    loaded = await backend.get_task(record.task_id, with_logs=False)
    assert loaded == done
    assert loaded is not None and loaded.lease_epoch == 3


async def test_unchanged_update_is_not_fenced(backend: TaskRepository) -> None:
    record = make_record(1, lease_epoch=1)
    await backend.apply(WriteBatch(inserts=[record]))
    assert await backend.apply(WriteBatch(updates=[record])) == BatchOutcome()


async def test_stale_epoch_update_is_fenced_and_changes_nothing(backend: TaskRepository) -> None:
    record = make_record(1, lease_epoch=4, owner="instance-new")
    await backend.apply(WriteBatch(inserts=[record]))
    for stale in (3, 5, 0):
        zombie = held_by(record, "instance-zombie", until=at(99), lease_epoch=stale)
        outcome = await backend.apply(WriteBatch(updates=[zombie]))
        assert outcome.fenced == {record.task_id}
        assert await backend.get_task(record.task_id, with_logs=False) == record


async def test_update_of_a_missing_task_is_fenced(backend: TaskRepository) -> None:
    ghost = held_by(make_record(7), "instance-a", until=at(60))
    outcome = await backend.apply(WriteBatch(updates=[ghost]))
    assert outcome.fenced == {ghost.task_id}
    assert await backend.get_task(ghost.task_id) is None


async def test_mixed_batch_reports_exactly_the_fenced(backend: TaskRepository) -> None:
    originals = [make_record(n, lease_epoch=n % 3) for n in range(1, 9)]
    await backend.apply(WriteBatch(inserts=originals))
    stale = {2, 5}
    updates = [
        held_by(r, "instance-a", until=at(60), lease_epoch=r.lease_epoch + (n in stale))
        for n, r in enumerate(originals, start=1)
    ]
    outcome = await backend.apply(WriteBatch(updates=list(reversed(updates))))
    assert outcome.fenced == {tid(n) for n in stale}
    assert outcome.rejected == frozenset()
    for n, (original, update) in enumerate(zip(originals, updates, strict=True), start=1):
        expected = original if n in stale else update
        assert await backend.get_task(original.task_id, with_logs=False) == expected, n


async def test_an_update_clears_what_the_previous_attempt_left(backend: TaskRepository) -> None:
    """A success after a failed attempt shows no error, stacktrace or old end time."""
    record = make_record(1, lease_epoch=1)
    await backend.apply(WriteBatch(inserts=[record]))
    failed_once = dataclasses.replace(
        held_by(record, "instance-a", until=at(60), lease_epoch=1),
        status=TaskStatus.PENDING,
        retries_used=1,
        error="RuntimeError: first attempt",
        stacktrace="Traceback ...",
        result={"partial": True},
        start_time=at(1),
        end_time=at(2),
        duration_ms=1000.0,
    )
    assert await backend.apply(WriteBatch(updates=[failed_once])) == BatchOutcome()
    succeeded = dataclasses.replace(
        failed_once,
        status=TaskStatus.SUCCESS,
        error=None,
        stacktrace=None,
        result=None,
        start_time=at(3),
        end_time=None,
        duration_ms=None,
    )
    assert await backend.apply(WriteBatch(updates=[succeeded])) == BatchOutcome()
    loaded = await backend.get_task(record.task_id, with_logs=False)
    assert loaded is not None
    assert (loaded.error, loaded.stacktrace, loaded.result) == (None, None, None)
    assert (loaded.end_time, loaded.duration_ms) == (None, None)
    assert loaded.start_time == at(3)
