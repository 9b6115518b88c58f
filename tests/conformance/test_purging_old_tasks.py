"""delete_finished_before(): old terminal tasks and their logs go; active ones never."""

from __future__ import annotations

from taskflow.models import TaskLogEntry, TaskStatus
from taskflow.repository.base import TaskRepository, WriteBatch
from tests.conformance.records import TERMINAL, at, finished, held_by, make_record, tid

CUTOFF = at(1000)


async def test_old_terminal_tasks_are_deleted_with_their_logs(backend: TaskRepository) -> None:
    old = [finished(make_record(n), status, end=at(500)) for n, status in enumerate(TERMINAL, 1)]
    recent = finished(make_record(10), TaskStatus.SUCCESS, end=at(1001))
    logs = [TaskLogEntry(r.task_id, 0, "info", "line", at(400)) for r in (*old, recent)]
    await backend.apply(WriteBatch(inserts=[*old, recent], logs=logs))
    assert await backend.delete_finished_before(CUTOFF) == len(old)
    for record in old:
        assert await backend.get_task(record.task_id) is None
        assert await backend.get_logs(record.task_id) == []
    assert await backend.get_task(recent.task_id, with_logs=False) == recent
    assert len(await backend.get_logs(recent.task_id)) == 1


async def test_active_tasks_are_never_deleted(backend: TaskRepository) -> None:
    # Active rows with an old end time: a retry waiting (pending), a new attempt (running).
    pending = make_record(1, end_time=at(10))
    running = held_by(make_record(2, end_time=at(10)), "instance-a", until=at(2000))
    await backend.apply(WriteBatch(inserts=[pending, running]))
    assert await backend.delete_finished_before(CUTOFF) == 0
    assert await backend.get_task(pending.task_id, with_logs=False) == pending
    assert await backend.get_task(running.task_id, with_logs=False) == running


async def test_small_batches_still_delete_everything(backend: TaskRepository) -> None:
    old = [finished(make_record(n), TaskStatus.SUCCESS, end=at(500)) for n in range(1, 8)]
    await backend.apply(WriteBatch(inserts=old))
    assert await backend.delete_finished_before(CUTOFF, batch=3) == 7
    assert await backend.delete_finished_before(CUTOFF, batch=3) == 0


async def test_deleted_tasks_leave_the_metrics(backend: TaskRepository) -> None:
    old = finished(make_record(1), TaskStatus.FAILED, end=at(500), duration_ms=10.0)
    kept = finished(make_record(2), TaskStatus.SUCCESS, end=at(1500), duration_ms=30.0)
    await backend.apply(WriteBatch(inserts=[old, kept]))
    await backend.delete_finished_before(CUTOFF)
    metrics = await backend.metrics()
    assert {k: v for k, v in metrics.counts.items() if v} == {"success": 1}
    assert metrics.avg_duration_seconds is not None
    assert abs(metrics.avg_duration_seconds - 0.03) < 1e-6


async def test_a_freed_idempotency_key_goes_with_its_task(backend: TaskRepository) -> None:
    record = make_record(1, idempotency_key="order-1")
    await backend.insert_with_key(record)
    await backend.apply(WriteBatch(updates=[finished(record, TaskStatus.SUCCESS, end=at(500))]))
    assert await backend.delete_finished_before(CUTOFF) == 1
    assert await backend.insert_with_key(make_record(2, idempotency_key="order-1")) == tid(2)
