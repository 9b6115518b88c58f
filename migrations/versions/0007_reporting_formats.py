"""Timestamps and JSON in the forms reports compare and filter.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08

SQLite: timestamps were stored as ``2026-12-07 10:04:28.864195`` text, while
the API shows ``2026-12-07T10:04:28.864195Z``; SQLite compares them as text,
so a filter written with an instant copied from the API matched nothing.
Every timestamp is rewritten as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC, six
fraction digits always: a fixed width, so text order stays time order).

PostgreSQL: the JSON that reports filter on (``tags``, log ``extra``, audit
``detail``) becomes ``jsonb``, so ``tags @> '{"tenant": "t1"}'`` works and
can be indexed.  Arguments and results stay ``json``: jsonb would reorder
their keys and rewrite their numbers.

MySQL/MariaDB: nothing changes.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMPS = {
    "taskflow_tasks": (
        "run_at",
        "created_at",
        "updated_at",
        "started_at",
        "finished_at",
        "lease_expires_at",
        "scheduled_for",
    ),
    "taskflow_task_logs": ("created_at",),
    "taskflow_idempotency_keys": ("created_at",),
    "taskflow_schedules": ("next_run_at", "last_run_at", "updated_at"),
    "taskflow_instances": ("started_at", "heartbeat_at", "stopped_at"),
    "taskflow_audit": ("created_at",),
    "taskflow_admin_sessions": ("created_at", "expires_at", "revoked_at"),
    "taskflow_login_attempts": ("attempted_at",),
}
JSONB_COLUMNS = (
    ("taskflow_tasks", "tags"),
    ("taskflow_task_logs", "extra"),
    ("taskflow_audit", "detail"),
)


def _to_rfc3339(column: str) -> str:
    # "YYYY-MM-DD HH:MM:SS[.f...]" -> "YYYY-MM-DDTHH:MM:SS.ffffffZ".  taskflow
    # always wrote six fraction digits; a value written by hand with fewer (or
    # none) is padded, keeping the width that makes text order time order.
    return (
        f"substr({column}, 1, 10) || 'T' || substr({column}, 12, 8) || '.' || "
        f"substr(substr({column}, 21) || '000000', 1, 6) || 'Z'"
    )


def _from_rfc3339(column: str) -> str:
    return f"substr({column}, 1, 10) || ' ' || substr({column}, 12, 15)"


def _rewrite_sqlite(convert: bool) -> None:
    for table, columns in TIMESTAMPS.items():
        for column in columns:
            if convert:
                new, which = _to_rfc3339(column), f"{column} LIKE '____-__-__ __:__:__%'"
            else:
                new, which = _from_rfc3339(column), f"{column} LIKE '____-__-__T__:__:__%Z'"
            op.execute(f"UPDATE {table} SET {column} = {new} WHERE {which}")


def _retype_postgresql(name: str) -> None:
    kind = postgresql.JSONB() if name == "jsonb" else postgresql.JSON()
    for table, column in JSONB_COLUMNS:
        op.alter_column(
            table,
            column,
            type_=kind,
            existing_nullable=True,
            postgresql_using=f"{column}::{name}",
        )


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "sqlite":
        _rewrite_sqlite(convert=True)
    elif dialect == "postgresql":
        _retype_postgresql("jsonb")


def downgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "sqlite":
        _rewrite_sqlite(convert=False)
    elif dialect == "postgresql":
        _retype_postgresql("json")
