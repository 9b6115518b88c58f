"""Observers receive every log line and status change; a failing one harms nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskflow import (
    FileLogger,
    InMemoryLogger,
    LifecycleEvent,
    LogEvent,
    TaskManager,
    TaskObserver,
    TaskStatus,
    task_log,
)


class Exploding(TaskObserver):
    """An observer whose every hook raises."""

    async def on_log(self, event: LogEvent) -> None:
        raise RuntimeError("observer bug")

    async def on_lifecycle(self, event: LifecycleEvent) -> None:
        raise RuntimeError("observer bug")


async def works(order: int) -> int:
    task_log("charging", level="info", order=order)
    task_log("noise", level="debug")
    return order


def sync_fails() -> None:
    task_log("about to fail", level="warning", code=503)
    raise ValueError("card declined")


async def test_events_reach_every_observer_in_order(
    schema_db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    memory = InMemoryLogger()
    quiet = InMemoryLogger(min_level="warning")
    log_path = tmp_path / "tasks.log"
    manager = TaskManager(
        database_url=schema_db_url,
        loggers=[Exploding(), memory, quiet, FileLogger(str(log_path), log_lifecycle=True)],
        log_file=str(log_path),  # same path: not added a second time
    )
    manager.task(name="works")(works)
    manager.task(name="sync_fails")(sync_fails)
    await manager.startup()
    try:
        ok = await manager.enqueue(works, 7, tags={"user": "42"})
        bad = await manager.enqueue(sync_fails)
        await manager.drain()
    finally:
        await manager.shutdown()  # delivers what is queued, closes the file

    statuses = {(e.task_id, e.status) for e in memory.lifecycle_events}
    assert (ok, TaskStatus.RUNNING) in statuses and (ok, TaskStatus.SUCCESS) in statuses
    assert (bad, TaskStatus.FAILED) in statuses
    failed = next(e for e in memory.lifecycle_events if e.status is TaskStatus.FAILED)
    assert failed.error == "ValueError: card declined" and "sync_fails" in (failed.stacktrace or "")
    success = next(e for e in memory.lifecycle_events if e.status is TaskStatus.SUCCESS)
    assert success.tags == {"user": "42"} and success.duration is not None

    messages = [(e.task_id, e.message, e.level, e.extra) for e in memory.log_events]
    assert (ok, "charging", "info", {"order": 7}) in messages
    assert (ok, "noise", "debug", {}) in messages
    assert (bad, "about to fail", "warning", {"code": 503}) in messages
    assert [e.message for e in quiet.log_events] == ["about to fail"]

    lines = log_path.read_text().splitlines()
    assert f"[{ok[:8]}] [works] charging" in lines
    assert lines.count(f"[{ok[:8]}] [works] charging") == 1  # one FileLogger, not two
    assert any(line.endswith("-- FAILED") and line.startswith(f"[{bad[:8]}]") for line in lines)
    assert "observer bug" in caplog.text  # logged, and the others still got everything


async def test_loggers_must_be_observers() -> None:
    with pytest.raises(TypeError, match="TaskObserver"):
        TaskManager(loggers=[print])  # type: ignore[list-item]
