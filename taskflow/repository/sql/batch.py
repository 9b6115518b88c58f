"""Pre-compiled statements for the group-commit hot path.

SQLAlchemy's per-row bind processing costs more than the database itself
when thousands of small rows a second are written.  So the writer's three
statements (insert a task, guarded update of a task, insert a log line) are
compiled once per dialect from the model set, and rows are turned into
driver-ready tuples here, with one converter per column kind.  Reads keep
using SQLAlchemy's types, so the stored forms below must be the ones those
types produce: a test compares both paths on every dialect.  The statistics
roll-up's upsert (``repository/stats.py``) is compiled here too, and the
helpers at the end say which rows of a batch the roll-up must count.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import bindparam, insert, text, update
from sqlalchemy.engine import Dialect

from taskflow.db import dialects
from taskflow.db.tables import ACTIVE_ONLY, task_logs_table, tasks_table
from taskflow.models import ACTIVE_STATUSES, TERMINAL_STATUSES, TaskLogEntry, TaskRecord
from taskflow.repository.sql.mapping import MUTABLE_COLUMNS
from taskflow.repository.sql.stats import ROW_COLUMNS, StatsDelta, upsert_statement

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
INSERT_DURATION = TASK_INSERT_COLUMNS.index("duration_ms")
UPDATE_DURATION = MUTABLE_COLUMNS.index("duration_ms")


def floats(column: list[Any]) -> list[Any]:
    """A duration column as floats: psycopg refuses a list mixing int and float."""
    return [value if value is None or type(value) is float else float(value) for value in column]


_encode_json = json.JSONEncoder(separators=(",", ":")).encode


def _json(value: Any) -> Any:
    if value is None:
        return None
    if not value and type(value) is dict:
        return "{}"  # most tasks have no keyword arguments
    return _encode_json(value)


# "YYYY-MM-DDTHH:MM:" by minute, and "SS." by second: most of the text of a
# timestamp comes from a small table instead of a call to isoformat(), whose
# C-level printf formatting cost about 6,000 instructions per timestamp.
_MINUTE_PREFIXES: dict[tuple[int, int, int, int, int], str] = {}
_SECONDS = tuple(f"{second:02d}." for second in range(60))


def _naive_utc_text(value: datetime | None) -> str | None:
    # The exact text UTCDateTime writes on SQLite (db/types.py) and parses
    # back: "YYYY-MM-DDTHH:MM:SS.ffffffZ" (microseconds always, even when zero).
    if value is None:
        return None
    if value.tzinfo is not timezone.utc:
        value = value.astimezone(timezone.utc)
    minute = (value.year, value.month, value.day, value.hour, value.minute)
    prefix = _MINUTE_PREFIXES.get(minute)
    if prefix is None:
        if len(_MINUTE_PREFIXES) >= 1024:
            _MINUTE_PREFIXES.clear()
        year, month, day, hour, minute_of_hour = minute
        prefix = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute_of_hour:02d}:"
        _MINUTE_PREFIXES[minute] = prefix
    return prefix + _SECONDS[value.second] + str(1_000_000 + value.microsecond)[1:] + "Z"


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


def _remember_recent(convert: Converter) -> Converter:
    # A new row's created_at, run_at and updated_at are one object, and a
    # finished task's updated_at and end_time another: each converted once.
    # Keyed by value and fold: datetimes of one zone that differ only in fold
    # (the repeated hour when clocks go back) compare equal but are different
    # instants.  Equal keys are then the same instant, so the same result.
    recent: dict[tuple[datetime, int], Any] = {}

    def converted(value: Any) -> Any:
        if value is None:
            return None
        key = (value, value.fold)
        result = recent.get(key)
        if result is None:
            if len(recent) >= 4096:
                recent.clear()
            result = recent[key] = convert(value)
        return result

    return converted


class BatchStatements:
    """The writer's statements compiled for one dialect, and their row builders."""

    def __init__(self, dialect: Dialect) -> None:
        self.convert_datetime = _remember_recent(datetime_converter(dialect))
        # A retried batch whose first commit went through (the connection died
        # after COMMIT) must not fail on its own rows: same id = already there.
        self.insert_task_sql = _compile(
            insert(tasks_table).values({c: bindparam(c) for c in TASK_INSERT_COLUMNS}),
            dialect,
            TASK_INSERT_COLUMNS,
        ) + dialects.skip_same_id_clause(dialect)
        update_names = (*tuple(f"v_{c}" for c in MUTABLE_COLUMNS), "g_id", "g_epoch")
        # A finished task is final for the group commit: an update of a row that
        # is no longer active changes nothing.  So an update that applies and
        # finishes the task counts it in the roll-up exactly once, even when a
        # batch is applied again after its commit went through.
        self.update_task_sql = _compile(
            update(tasks_table)
            .where(
                tasks_table.c.id == bindparam("g_id"),
                tasks_table.c.lease_epoch == bindparam("g_epoch"),
                text(ACTIVE_ONLY),
            )
            .values({c: bindparam(f"v_{c}") for c in MUTABLE_COLUMNS}),
            dialect,
            update_names,
        )
        # PostgreSQL: the same updates as one statement that says which applied.
        self.update_applied_sql = dialects.set_update_returning_applied(
            dialect, tasks_table.name, ACTIVE_ONLY
        )
        self.insert_log_sql = _compile(
            insert(task_logs_table).values({c: bindparam(c) for c in LOG_INSERT_COLUMNS}),
            dialect,
            LOG_INSERT_COLUMNS,
        ) + dialects.skip_same_id_clause(dialect)
        self._dialect = dialect
        self._stats_upsert_sql: str | None = None

    @property
    def stats_upsert_sql(self) -> str:
        """The roll-up's upsert, compiled at first use (MySQL's form depends on the server)."""
        if self._stats_upsert_sql is None:
            statement = upsert_statement(self._dialect).values(
                {c: bindparam(c) for c in ROW_COLUMNS}
            )
            self._stats_upsert_sql = _compile(statement, self._dialect, ROW_COLUMNS)
        return self._stats_upsert_sql

    def task_rows(self, records: Sequence[TaskRecord]) -> list[tuple[Any, ...]]:
        dt = self.convert_datetime
        return [
            (
                r.task_id,
                r.func_name,
                r.status._value_,  # the same as .value, without a descriptor call
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
        dt = self.convert_datetime
        return [
            (
                r.status._value_,
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

    @staticmethod
    def update_arrays(rows: Sequence[tuple[Any, ...]]) -> tuple[list[Any], ...]:
        """``update_rows`` turned column-wise: the parameters of ``update_applied_sql``."""
        columns = [list(column) for column in zip(*rows, strict=True)]
        if columns:
            columns[UPDATE_DURATION] = floats(columns[UPDATE_DURATION])
        return tuple(columns)

    def log_rows(self, entries: Sequence[TaskLogEntry]) -> list[tuple[Any, ...]]:
        dt = self.convert_datetime
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


ACTIVE = frozenset(status.value for status in ACTIVE_STATUSES)
TERMINAL = frozenset(status.value for status in TERMINAL_STATUSES)
# Where status and duration sit in the rows built above.  The roll-up counts
# what the rows say, never the records: the runtime keeps changing a record
# while its batch is in flight, and the roll-up must match what was written.
_INSERT_STATUS = TASK_INSERT_COLUMNS.index("status")
_INSERT_DURATION = TASK_INSERT_COLUMNS.index("duration_ms")
_UPDATE_STATUS = MUTABLE_COLUMNS.index("status")


def finished_insert_rows(
    records: Sequence[TaskRecord], rows: Sequence[tuple[Any, ...]]
) -> dict[str, tuple[str, str, float | None]]:
    """New rows that are finished already (rare: a task cancelled before its insert committed).

    Returns task id -> (func_name, status, duration_ms), as the rows store them.
    """
    return {
        record.task_id: (record.func_name, row[_INSERT_STATUS], row[_INSERT_DURATION])
        for record, row in zip(records, rows, strict=True)
        if row[_INSERT_STATUS] in TERMINAL
    }


def count_finishing_updates(
    records: Sequence[TaskRecord], rows: Sequence[tuple[Any, ...]], delta: StatsDelta
) -> None:
    """Add the applied update rows that finish their task to ``delta``."""
    for record, row in zip(records, rows, strict=True):
        status = row[_UPDATE_STATUS]
        if status in TERMINAL:
            delta.add(record.func_name, status, row[UPDATE_DURATION])


def settle_updates(
    records: Sequence[TaskRecord], states: dict[str, tuple[str, int]]
) -> tuple[list[TaskRecord], set[str]]:
    """Which guarded updates apply, from each row's (status, lease_epoch) read under lock.

    Returns the records to write and the fenced ids (row gone, or its epoch
    moved on).  A row still at our epoch but already finished is neither:
    the update repeats one that was applied (a retried batch), and changes
    nothing.
    """
    apply: list[TaskRecord] = []
    fenced: set[str] = set()
    for record in records:
        state = states.get(record.task_id)
        if state is None or state[1] != record.lease_epoch:
            fenced.add(record.task_id)
        elif state[0] in ACTIVE:
            apply.append(record)
    return apply, fenced
