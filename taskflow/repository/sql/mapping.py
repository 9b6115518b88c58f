"""Conversion between ``taskflow_tasks`` rows and ``TaskRecord`` objects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskflow.models import TaskLogEntry, TaskRecord, TaskStatus

# Columns a state change rewrites (in table order); everything else is fixed at insert.
MUTABLE_COLUMNS = (
    "status",
    "executor",
    "attempt",
    "run_at",
    "updated_at",
    "started_at",
    "finished_at",
    "duration_ms",
    "error",
    "stacktrace",
    "result",
    "owner",
    "lease_expires_at",
)


def insert_params(record: TaskRecord) -> dict[str, Any]:
    """The full row for a new task."""
    params = update_params(record)
    params.update(
        id=record.task_id,
        func_name=record.func_name,
        source=record.source,
        priority=record.priority,
        max_retries=record.max_retries,
        created_at=record.created_at,
        tags=record.tags or None,
        args=list(record.args) if record.args_stored else None,
        kwargs=dict(record.kwargs) if record.args_stored else None,
        payload=record.payload,
        payload_format=record.payload_format,
        lease_epoch=record.lease_epoch,
        idempotency_key=record.idempotency_key,
        retried_from=record.retried_from,
        schedule_name=record.schedule_name,
        scheduled_for=record.scheduled_for,
    )
    return params


def update_params(record: TaskRecord) -> dict[str, Any]:
    """The mutable part of a task's row."""
    return {
        "status": record.status.value,
        "attempt": record.retries_used,
        "run_at": record.run_at,
        "updated_at": record.updated_at,
        "started_at": record.start_time,
        "finished_at": record.end_time,
        "duration_ms": record.duration_ms,
        "error": record.error,
        "stacktrace": record.stacktrace,
        "result": record.result,
        "executor": record.executor,
        "owner": record.owner,
        "lease_expires_at": record.lease_expires_at,
    }


def record_from_row(row: Mapping[Any, Any]) -> TaskRecord:
    """A ``TaskRecord`` from a row mapping (columns missing from a narrow select get defaults)."""
    args = row.get("args")
    kwargs = row.get("kwargs")
    payload_format = row.get("payload_format") or "json"
    payload = row.get("payload")
    return TaskRecord(
        task_id=row["id"],
        func_name=row["func_name"],
        status=TaskStatus(row["status"]),
        args=tuple(args) if args is not None else (),
        kwargs=dict(kwargs) if kwargs is not None else {},
        created_at=row["created_at"],
        start_time=row.get("started_at"),
        end_time=row.get("finished_at"),
        retries_used=row.get("attempt") or 0,
        error=row.get("error"),
        stacktrace=row.get("stacktrace"),
        idempotency_key=row.get("idempotency_key"),
        tags=dict(row.get("tags") or {}),
        encrypted_payload=payload if payload_format == "fernet" else None,
        source=row.get("source") or "manual",
        priority=row.get("priority"),
        executor=row.get("executor"),
        max_retries=row.get("max_retries") or 0,
        run_at=row.get("run_at") or row["created_at"],
        updated_at=row.get("updated_at") or row["created_at"],
        duration_ms=row.get("duration_ms"),
        result=row.get("result"),
        args_stored=args is not None,
        payload=payload,
        payload_format=payload_format,
        owner=row.get("owner"),
        lease_epoch=row.get("lease_epoch") or 0,
        lease_expires_at=row.get("lease_expires_at"),
        retried_from=row.get("retried_from"),
        schedule_name=row.get("schedule_name"),
        scheduled_for=row.get("scheduled_for"),
    )


def log_params(entry: TaskLogEntry) -> dict[str, Any]:
    return {
        "id": entry.entry_id,
        "task_id": entry.task_id,
        "attempt": entry.attempt,
        "level": entry.level,
        "message": entry.message,
        "extra": entry.extra or None,
        "created_at": entry.created_at,
    }


def log_from_row(row: Mapping[Any, Any]) -> TaskLogEntry:
    return TaskLogEntry(
        task_id=row["task_id"],
        attempt=row["attempt"],
        level=row["level"],
        message=row["message"],
        created_at=row["created_at"],
        extra=dict(row["extra"] or {}),
        entry_id=row["id"],
    )


def render_logs(entries: list[TaskLogEntry], last_attempt: int) -> list[str]:
    """Log lines as fastapi-taskflow shows them, with ``--- Retry N ---`` between attempts."""
    lines: list[str] = []
    shown_attempt = 0
    for entry in entries:
        while shown_attempt < entry.attempt:
            shown_attempt += 1
            lines.append(f"--- Retry {shown_attempt} ---")
        lines.append(entry.render())
    while shown_attempt < last_attempt:
        shown_attempt += 1
        lines.append(f"--- Retry {shown_attempt} ---")
    return lines
