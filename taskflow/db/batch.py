"""Pre-compiled statements for the group-commit hot path.

SQLAlchemy's per-row bind processing costs more than the database itself
when thousands of small rows a second are written.  So the writer's three
statements (insert a task, guarded update of a task, insert a log line) are
compiled once per dialect from the model set, and rows are turned into
driver-ready tuples here, with one converter per column kind.  Reads keep
using SQLAlchemy's types, so the stored forms below must be the ones those
types produce: a test compares both paths on every dialect.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlalchemy.engine import Dialect

from taskflow.db import dialects
from taskflow.db.mapping import MUTABLE_COLUMNS
from taskflow.db.tables import task_logs_table, tasks_table
from taskflow.models import TaskLogEntry, TaskRecord

Converter = Callable[[Any], Any]

# Column order of the pre-compiled statements; the row builders below follow it.
TASK_INSERT_COLUMNS = (
    "id",
    "func_name",
    "status",
    "source",
    "executor",
    "priority",
    "attempt",
    "max_retries",
    "run_at",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "duration_ms",
    "error",
    "stacktrace",
    "tags",
    "args",
    "kwargs",
    "payload",
    "payload_format",
    "result",
    "owner",
    "lease_epoch",
    "lease_expires_at",
    "idempotency_key",
    "retried_from",
    "schedule_name",
    "scheduled_for",
)
LOG_INSERT_COLUMNS = ("id", "task_id", "attempt", "level", "message", "extra", "created_at")


_encode_json = json.JSONEncoder(separators=(",", ":")).encode


def _json(value: Any) -> Any:
    return None if value is None else _encode_json(value)


def _naive_utc_text(value: datetime | None) -> str | None:
    # The exact text SQLAlchemy's SQLite DATETIME writes and parses back:
    # "YYYY-MM-DD HH:MM:SS.ffffff", the first 26 characters of the isoformat.
    if value is None:
        return None
    if value.tzinfo is not timezone.utc:
        value = value.astimezone(timezone.utc)
    return value.isoformat(" ", "microseconds")[:26]


def _naive_utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(timezone.utc).replace(tzinfo=None)


def _aware_utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(timezone.utc)


def datetime_converter(dialect: Dialect) -> Converter:
    """How a UTC datetime is handed to this dialect's driver."""
    if dialect.name == "sqlite":
        return _naive_utc_text
    if dialect.name == "postgresql":
        return _aware_utc
    return _naive_utc


def _compile(statement: Any, dialect: Dialect, expected: Sequence[str]) -> str:
    compiled = statement.compile(dialect=dialect)
    order = tuple(compiled.positiontup or ())
    if order != tuple(expected):
        raise AssertionError(f"compiled parameter order {order} differs from {tuple(expected)}")
    return str(compiled.string)


def _remember_last(convert: Converter) -> Converter:
    # A new row's created_at, run_at and updated_at are one object: convert once.
    last: list[Any] = [None, None]

    def converted(value: Any) -> Any:
        if value is last[0]:
            return last[1]
        result = convert(value)
        last[0], last[1] = value, result
        return result

    return converted


class BatchStatements:
    """The writer's statements compiled for one dialect, and their row builders."""

    def __init__(self, dialect: Dialect) -> None:
        self._dt = _remember_last(datetime_converter(dialect))
        # A retried batch whose first commit went through (the connection died
        # after COMMIT) must not fail on its own rows: same id = already there.
        self.insert_task_sql = _compile(
            insert(tasks_table).values({c: bindparam(c) for c in TASK_INSERT_COLUMNS}),
            dialect,
            TASK_INSERT_COLUMNS,
        ) + dialects.skip_same_id_clause(dialect)
        update_names = (*tuple(f"v_{c}" for c in MUTABLE_COLUMNS), "g_id", "g_epoch")
        self.update_task_sql = _compile(
            update(tasks_table)
            .where(
                tasks_table.c.id == bindparam("g_id"),
                tasks_table.c.lease_epoch == bindparam("g_epoch"),
            )
            .values({c: bindparam(f"v_{c}") for c in MUTABLE_COLUMNS}),
            dialect,
            update_names,
        )
        self.insert_log_sql = _compile(
            insert(task_logs_table).values({c: bindparam(c) for c in LOG_INSERT_COLUMNS}),
            dialect,
            LOG_INSERT_COLUMNS,
        ) + dialects.skip_same_id_clause(dialect)

    def task_rows(self, records: Sequence[TaskRecord]) -> list[tuple[Any, ...]]:
        dt = self._dt
        return [
            (
                r.task_id,
                r.func_name,
                r.status.value,
                r.source,
                r.executor,
                r.priority,
                r.retries_used,
                r.max_retries,
                dt(r.run_at),
                dt(r.created_at),
                dt(r.updated_at),
                dt(r.start_time),
                dt(r.end_time),
                r.duration_ms,
                r.error,
                r.stacktrace,
                _json(r.tags or None),
                _json(list(r.args)) if r.args_stored else None,
                _json(r.kwargs) if r.args_stored else None,
                r.payload,
                r.payload_format,
                _json(r.result),
                r.owner,
                r.lease_epoch,
                dt(r.lease_expires_at),
                r.idempotency_key,
                r.retried_from,
                r.schedule_name,
                dt(r.scheduled_for),
            )
            for r in records
        ]

    def update_rows(self, records: Sequence[TaskRecord]) -> list[tuple[Any, ...]]:
        dt = self._dt
        return [
            (
                r.status.value,
                r.executor,
                r.retries_used,
                dt(r.run_at),
                dt(r.updated_at),
                dt(r.start_time),
                dt(r.end_time),
                r.duration_ms,
                r.error,
                r.stacktrace,
                _json(r.result),
                r.owner,
                dt(r.lease_expires_at),
                r.task_id,
                r.lease_epoch,
            )
            for r in records
        ]

    def log_rows(self, entries: Sequence[TaskLogEntry]) -> list[tuple[Any, ...]]:
        dt = self._dt
        return [
            (
                e.entry_id,
                e.task_id,
                e.attempt,
                e.level,
                e.message,
                _json(e.extra or None),
                dt(e.created_at),
            )
            for e in entries
        ]
