"""PostgreSQL: a whole group commit as one statement, run outside an explicit transaction.

Under load the writer's commits set the pace of every request that waits for
its task's row, and on PostgreSQL a commit used to be five round trips
(BEGIN, the inserts, the guarded updates, the statistics roll-up, COMMIT).
Each round trip waits for a turn of an event loop that is busy serving
requests, so a commit took several times its server time.  PostgreSQL runs a
single statement atomically, data-modifying ``WITH`` parts included, so the
same work sent as one statement in autocommit is one round trip with the
same all-or-nothing outcome:

* ``ins``: the new rows, one array per column (``unnest``), skipping ids that
  exist already (a batch applied again after its commit went through);
* ``locked`` / ``upd``: the guarded updates, rows locked in id order first
  (the order every other writer uses), returning the rows that applied;
* ``stats``: the roll-up of the updates that applied and finish their task,
  grouped per (function, status, bucket) in key order; the bucket of each
  duration is computed by ``stats.bucket_of`` in Python and sent along, so
  every writer buckets alike;
* ``logs``: the log lines.

The final ``SELECT`` returns the ids whose update applied; the others are
fenced.  Batches this statement cannot express the same way (a new row that
is finished already, whose roll-up depends on whether an earlier attempt
stored it; a log line of a row inserted by the same batch, which the foreign
key would check before the insert is visible) take the multi-statement
path of ``repository/group_commit.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Dialect

from taskflow.db.dialects import pg_update_arrays, pg_update_set_clause, positional_parameter
from taskflow.models import TaskRecord
from taskflow.repository.base import WriteBatch
from taskflow.repository.sql.batch import (
    INSERT_DURATION,
    LOG_INSERT_COLUMNS,
    TASK_INSERT_COLUMNS,
    TERMINAL,
    UPDATE_DURATION,
    BatchStatements,
    floats,
)
from taskflow.repository.sql.mapping import MUTABLE_COLUMNS
from taskflow.repository.sql.stats import NO_DURATION, bucket_of

# PostgreSQL array element type of each column, in TASK_INSERT_COLUMNS order.
_TASK_KINDS = {
    "priority": "int",
    "attempt": "int",
    "max_retries": "int",
    "lease_epoch": "int",
    "duration_ms": "float8",
    "error": "text",
    "stacktrace": "text",
    "payload": "bytea",
    "tags": "jsonb",
    "args": "json",
    "kwargs": "json",
    "result": "json",
}
_TIMESTAMPS = {
    "run_at",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "lease_expires_at",
    "scheduled_for",
}
_LOG_KINDS = {"attempt": "int", "message": "text", "extra": "jsonb", "created_at": "timestamptz"}
_JSON_KINDS = ("json", "jsonb")
_UPDATE_DURATION = MUTABLE_COLUMNS.index("duration_ms")


def _kind(column: str, kinds: dict[str, str]) -> str:
    if column in _TIMESTAMPS:
        return "timestamptz"
    return kinds.get(column, "varchar")


def _unnest_select(
    dialect: Dialect, columns: Sequence[str], kinds: dict[str, str], first: int, alias: str
) -> str:
    # JSON travels as text (json[] parameters would need a codec per value).
    arrays = ", ".join(
        f"{positional_parameter(dialect, n)}::"
        f"{'text' if _kind(c, kinds) in _JSON_KINDS else _kind(c, kinds)}[]"
        for n, c in enumerate(columns, first)
    )
    picked = ", ".join(
        f"{alias}.{c}::{_kind(c, kinds)}" if _kind(c, kinds) in _JSON_KINDS else f"{alias}.{c}"
        for c in columns
    )
    return f"SELECT {picked} FROM unnest({arrays}) AS {alias}({', '.join(columns)})"


def batch_statement(dialect: Dialect, tasks: str, logs: str, stats: str, active_only: str) -> str:
    """The one statement of a group commit; parameters as ``batch_parameters`` returns them.

    Every parameter appears once, in order, as psycopg's ``%s`` requires.
    """
    names = ", ".join(TASK_INSERT_COLUMNS)
    inserts = _unnest_select(dialect, TASK_INSERT_COLUMNS, _TASK_KINDS, 1, "i")
    first_update = len(TASK_INSERT_COLUMNS) + 1
    update_arrays, update_names, update_count = pg_update_arrays(dialect, first_update)
    bucket = positional_parameter(dialect, first_update + update_count)
    stripe = positional_parameter(dialect, first_update + update_count + 1)
    first_log = first_update + update_count + 2
    log_names = ", ".join(LOG_INSERT_COLUMNS)
    log_rows = _unnest_select(dialect, LOG_INSERT_COLUMNS, _LOG_KINDS, first_log, "l")
    terminal = ", ".join(f"'{status}'" for status in sorted(TERMINAL))
    timed = f"u.s_bucket <> {NO_DURATION}"
    return (
        f"WITH ins AS (INSERT INTO {tasks} ({names}) {inserts} ON CONFLICT (id) DO NOTHING), "
        f"v AS (SELECT * FROM unnest({update_arrays}, {bucket}::int[]) "
        f"AS v({update_names}, s_bucket)), "
        f"locked AS (SELECT t.id FROM {tasks} AS t JOIN v ON t.id = v.g_id "
        "ORDER BY t.id FOR UPDATE OF t), "
        f"upd AS (UPDATE {tasks} AS t SET {pg_update_set_clause()} "
        "FROM v JOIN locked ON locked.id = v.g_id "
        f"WHERE t.id = v.g_id AND t.lease_epoch = v.g_epoch AND t.{active_only} "
        "RETURNING t.id, t.func_name, t.status, t.duration_ms, v.s_bucket), "
        f"stats AS (INSERT INTO {stats} (func_name, status, bucket, stripe, task_count, "
        "duration_sum, duration_min, duration_max) "
        f"SELECT u.func_name, u.status, u.s_bucket, {stripe}::int, count(*), "
        f"coalesce(sum(u.duration_ms) FILTER (WHERE {timed}), 0), "
        f"min(u.duration_ms) FILTER (WHERE {timed}), max(u.duration_ms) FILTER (WHERE {timed}) "
        f"FROM upd AS u WHERE u.status IN ({terminal}) "
        "GROUP BY u.func_name, u.status, u.s_bucket ORDER BY u.func_name, u.status, u.s_bucket "
        "ON CONFLICT (func_name, status, bucket, stripe) DO UPDATE SET "
        f"task_count = {stats}.task_count + excluded.task_count, "
        f"duration_sum = {stats}.duration_sum + excluded.duration_sum, "
        f"duration_min = LEAST({stats}.duration_min, excluded.duration_min), "
        f"duration_max = GREATEST({stats}.duration_max, excluded.duration_max)), "
        f"lines AS (INSERT INTO {logs} ({log_names}) {log_rows} ON CONFLICT (id) DO NOTHING) "
        "SELECT id FROM upd"
    )


def fits_one_statement(batch: WriteBatch) -> bool:
    """Whether ``batch_statement`` applies ``batch`` exactly as the multi-statement path would."""
    inserted = {record.task_id for record in batch.inserts}
    if any(record.status.value in TERMINAL for record in batch.inserts):
        return False
    if any(record.task_id in inserted for record in batch.updates):
        return False
    return not any(entry.task_id in inserted for entry in batch.logs)


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


def batch_parameters(
    statements: BatchStatements,
    batch: WriteBatch,
    ordered_updates: Sequence[TaskRecord],
    stripe: int,
) -> tuple[Any, ...]:
    """The statement's parameters, updates in ``ordered_updates`` order."""
    task_rows = statements.task_rows(batch.inserts)
    update_rows = statements.update_rows(ordered_updates)
    buckets = [bucket_of(row[UPDATE_DURATION]) for row in update_rows]
    log_rows = statements.log_rows(batch.logs)
    inserted = _columns(task_rows, len(TASK_INSERT_COLUMNS))
    inserted[INSERT_DURATION] = floats(inserted[INSERT_DURATION])
    updated = _columns(update_rows, _UPDATE_WIDTH)
    updated[UPDATE_DURATION] = floats(updated[UPDATE_DURATION])
    parameters = (
        *inserted,
        *updated,
        buckets,
        stripe,
        *_columns(log_rows, len(LOG_INSERT_COLUMNS)),
    )
    return parameters


_UPDATE_WIDTH = len(MUTABLE_COLUMNS) + 2  # the guard's id and epoch follow
