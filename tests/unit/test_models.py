"""The public record types: the described system's shapes plus taskflow's additions."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from taskflow import TaskConfig, TaskContext, TaskRecord, TaskStatus
from taskflow.models import (
    TERMINAL_STATUSES,
    FunctionMetrics,
    TaskLogEntry,
    TaskMetrics,
    utcnow,
)
from taskflow.repository.sql.mapping import render_logs

# The described system's TaskRecord.to_dict() keys, and the ones taskflow adds.
DESCRIBED_KEYS = {
    "task_id",
    "func_name",
    "status",
    "created_at",
    "start_time",
    "end_time",
    "duration",
    "retries_used",
    "error",
    "logs",
    "stacktrace",
    "tags",
    "source",
    "priority",
    "executor",
}
TASKFLOW_KEYS = {"max_retries", "run_at", "result", "retried_from", "scheduled_for"}
NEVER_SHOWN = {"args", "kwargs", "idempotency_key", "encrypted_payload", "payload", "owner"}

T0 = datetime(2026, 1, 31, 12, 0, 0, tzinfo=timezone.utc)


def finished_record(**overrides: object) -> TaskRecord:
    values: dict[str, object] = {
        "task_id": "01900000-0000-7000-8000-000000000001",
        "func_name": "send_email",
        "status": TaskStatus.SUCCESS,
        "args": ("user@example.com",),
        "kwargs": {"retry": True},
        "created_at": T0,
        "start_time": T0 + timedelta(seconds=1),
        "end_time": T0 + timedelta(seconds=3, milliseconds=500),
        "idempotency_key": "signup-1",
        "tags": {"tenant": "acme"},
        "encrypted_payload": b"secret",
        "logs": ["2026-01-31T12:00:01 hello"],
    }
    values.update(overrides)
    return TaskRecord(**values)  # type: ignore[arg-type]


# -- TaskRecord ----------------------------------------------------------------


def test_to_dict_keys_are_the_described_ones_plus_ours() -> None:
    data = finished_record().to_dict()
    assert set(data) == DESCRIBED_KEYS | TASKFLOW_KEYS
    assert not set(data) & NEVER_SHOWN


def test_to_dict_without_logs() -> None:
    data = finished_record().to_dict(include_logs=False)
    assert set(data) == (DESCRIBED_KEYS | TASKFLOW_KEYS) - {"logs"}


def test_to_dict_values_are_json_and_timestamps_aware_iso() -> None:
    record = finished_record(result={"sent": True}, priority=5, executor="thread")
    data = record.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["status"] == "success"
    assert data["tags"] == {"tenant": "acme"}
    assert data["result"] == {"sent": True}
    for key in ("created_at", "start_time", "end_time", "run_at"):
        parsed = datetime.fromisoformat(data[key])
        assert parsed.utcoffset() == timedelta(0), key
    assert datetime.fromisoformat(data["created_at"]) == T0
    assert data["logs"] == ["2026-01-31T12:00:01 hello"]


def test_to_dict_copies_mutable_fields() -> None:
    record = finished_record()
    data = record.to_dict()
    data["tags"]["tenant"] = "changed"
    data["logs"].append("x")
    assert record.tags == {"tenant": "acme"}
    assert record.logs == ["2026-01-31T12:00:01 hello"]


def test_duration_prefers_the_measured_milliseconds() -> None:
    assert finished_record(duration_ms=1234.5).duration == pytest.approx(1.2345)


def test_duration_falls_back_to_start_and_end() -> None:
    assert finished_record().duration == pytest.approx(2.5)


def test_duration_is_none_until_finished() -> None:
    assert finished_record(end_time=None).duration is None
    assert finished_record(start_time=None, end_time=None).duration is None
    pending = TaskRecord(task_id="x", func_name="f", status=TaskStatus.PENDING)
    assert pending.duration is None
    assert pending.to_dict()["duration"] is None


def test_defaults_match_the_described_record() -> None:
    record = TaskRecord(task_id="x", func_name="f", status=TaskStatus.PENDING)
    assert record.args == ()
    assert record.kwargs == {}
    assert record.retries_used == 0
    assert record.logs == [] and record.tags == {}
    assert record.source == "manual"
    assert record.priority is None and record.executor is None
    assert record.created_at.tzinfo is not None
    assert record.attempt == 0


def test_mutable_defaults_are_not_shared() -> None:
    first = TaskRecord(task_id="a", func_name="f", status=TaskStatus.PENDING)
    second = TaskRecord(task_id="b", func_name="f", status=TaskStatus.PENDING)
    first.tags["k"] = "v"
    first.logs.append("line")
    assert second.tags == {} and second.logs == []


def test_utcnow_is_aware_utc() -> None:
    assert utcnow().utcoffset() == timedelta(0)


# -- TaskStatus, TaskConfig, TaskContext -------------------------------------------


def test_status_values_and_terminality() -> None:
    assert [s.value for s in TaskStatus] == [
        "pending",
        "running",
        "success",
        "failed",
        "interrupted",
        "cancelled",
    ]
    assert set(TERMINAL_STATUSES) == {
        TaskStatus.SUCCESS,
        TaskStatus.FAILED,
        TaskStatus.INTERRUPTED,
        TaskStatus.CANCELLED,
    }
    assert not TaskStatus.PENDING.is_terminal and not TaskStatus.RUNNING.is_terminal
    assert TaskStatus.CANCELLED.is_terminal
    assert str(TaskStatus.SUCCESS) == "success"
    assert TaskStatus("failed") is TaskStatus.FAILED
    assert TaskStatus.SUCCESS == "success"  # a str enum, as in the described system


def test_task_config_defaults() -> None:
    config = TaskConfig()
    assert (config.retries, config.delay, config.backoff) == (0, 0.0, 1.0)
    assert not config.persist and not config.requeue_on_interrupt and not config.eager
    assert config.name is None and config.priority is None and config.executor is None


def test_task_context_fields() -> None:
    context = TaskContext("id-1", "send_email", 0)
    assert (context.task_id, context.func_name, context.attempt, context.tags) == (
        "id-1",
        "send_email",
        0,
        {},
    )


# -- metrics -----------------------------------------------------------------------


def test_success_rate_counts_terminal_tasks_only() -> None:
    metrics = TaskMetrics(
        counts={"success": 3, "failed": 1, "pending": 50, "running": 7},
        avg_duration_seconds=None,
        by_function=[],
    )
    assert metrics.total == 61
    assert metrics.success_rate == pytest.approx(0.75)


def test_interrupted_and_cancelled_count_as_terminal() -> None:
    metrics = TaskMetrics(
        counts={"success": 2, "interrupted": 1, "cancelled": 1},
        avg_duration_seconds=None,
        by_function=[],
    )
    assert metrics.success_rate == pytest.approx(0.5)


def test_success_rate_is_none_without_terminal_tasks() -> None:
    assert TaskMetrics({}, None, []).success_rate is None
    assert TaskMetrics({"pending": 4, "running": 1}, None, []).success_rate is None


def test_metrics_to_dict_has_every_status_and_rounds() -> None:
    function = FunctionMetrics("job", 4, 1, 2, 1, 0.25, 0.1, 0.5, 0.5)
    metrics = TaskMetrics({"success": 1, "failed": 2, "running": 1}, 1 / 3, [function])
    data = metrics.to_dict()
    assert set(data) == {
        "total",
        "pending",
        "running",
        "success",
        "failed",
        "interrupted",
        "cancelled",
        "success_rate",
        "avg_duration_seconds",
        "by_function",
    }
    assert data["total"] == 4
    assert data["cancelled"] == 0 and data["interrupted"] == 0 and data["pending"] == 0
    assert data["success_rate"] == pytest.approx(0.333333)
    assert data["avg_duration_seconds"] == 0.333333
    (row,) = data["by_function"]
    assert row["func_name"] == "job"
    assert row["success_rate"] == pytest.approx(1 / 3)
    assert row["p95_duration"] == 0.5
    assert json.loads(json.dumps(data)) == data


def test_function_success_rate() -> None:
    assert FunctionMetrics("f", 3, 3, 0, 0, None, None, None, None).success_rate == 1.0
    assert FunctionMetrics("f", 2, 0, 0, 2, None, None, None, None).success_rate is None


# -- log lines ---------------------------------------------------------------------


def entry(attempt: int, message: str, second: int = 0) -> TaskLogEntry:
    return TaskLogEntry("id", attempt, "info", message, T0 + timedelta(seconds=second))


def test_log_line_format() -> None:
    assert entry(0, "hello", 5).render() == "2026-01-31T12:00:05 hello"


def test_render_logs_puts_separators_between_attempts() -> None:
    lines = render_logs([entry(0, "a"), entry(0, "b"), entry(1, "c"), entry(2, "d")], 2)
    assert lines == [
        "2026-01-31T12:00:00 a",
        "2026-01-31T12:00:00 b",
        "--- Retry 1 ---",
        "2026-01-31T12:00:00 c",
        "--- Retry 2 ---",
        "2026-01-31T12:00:00 d",
    ]


def test_render_logs_shows_attempts_that_logged_nothing() -> None:
    lines = render_logs([entry(0, "first"), entry(2, "third")], 3)
    assert lines == [
        "2026-01-31T12:00:00 first",
        "--- Retry 1 ---",
        "--- Retry 2 ---",
        "2026-01-31T12:00:00 third",
        "--- Retry 3 ---",
    ]


def test_render_logs_without_entries() -> None:
    assert render_logs([], 0) == []
    assert render_logs([], 2) == ["--- Retry 1 ---", "--- Retry 2 ---"]
