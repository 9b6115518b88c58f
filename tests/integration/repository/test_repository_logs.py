"""Task logs read back from ``SqlTaskRepository``: order, rendering, retry separators.

They run on SQLite, PostgreSQL and MySQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from taskflow.models import TaskLogEntry
from taskflow.repository.base import WriteBatch
from taskflow.repository.sql import SqlTaskRepository
from tests.integration.repository.records import BASE, PLUS_2, make_record, tid


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
