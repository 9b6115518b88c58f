"""Initial schema: tasks, task logs, idempotency keys, schedules, instances, audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Column types are written out here rather than imported from
``taskflow.db.tables``, so this revision keeps producing the same DDL whatever
the models later become.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
# An application that runs these revisions within its own Alembic history
# names this lineage `taskflow` (`alembic upgrade taskflow@head`).
branch_labels: str | Sequence[str] | None = ("taskflow",)
depends_on: str | Sequence[str] | None = None


def _utc_datetime() -> sa.types.TypeEngine[Any]:
    # The DDL of taskflow.db.types.UTCDateTime: timestamptz on PostgreSQL,
    # microsecond DATETIME on MySQL/MariaDB, DATETIME on SQLite.
    return (
        sa.DateTime()
        .with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
        .with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    )


def _long_text() -> sa.types.TypeEngine[Any]:
    return sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def _long_binary() -> sa.types.TypeEngine[Any]:
    return sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")


def _auto_id() -> sa.types.TypeEngine[Any]:
    # SQLite only auto-increments an INTEGER PRIMARY KEY.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _create_tasks() -> None:
    op.create_table(
        "taskflow_tasks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("func_name", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("executor", sa.String(length=16), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("max_retries", sa.Integer(), nullable=False),
        sa.Column("run_at", _utc_datetime(), nullable=False),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.Column("updated_at", _utc_datetime(), nullable=False),
        sa.Column("started_at", _utc_datetime(), nullable=True),
        sa.Column("finished_at", _utc_datetime(), nullable=True),
        sa.Column("duration_ms", sa.Double(), nullable=True),
        sa.Column("error", _long_text(), nullable=True),
        sa.Column("stacktrace", _long_text(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=True),
        sa.Column("args", sa.JSON(), nullable=True),
        sa.Column("kwargs", sa.JSON(), nullable=True),
        sa.Column("payload", _long_binary(), nullable=True),
        sa.Column("payload_format", sa.String(length=16), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("lease_epoch", sa.Integer(), nullable=False),
        sa.Column("lease_expires_at", _utc_datetime(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("retried_from", sa.String(length=36), nullable=True),
        sa.Column("schedule_name", sa.String(length=255), nullable=True),
        sa.Column("scheduled_for", _utc_datetime(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'success', 'failed', 'interrupted', 'cancelled')",
            name=op.f("ck_taskflow_tasks_status"),
        ),
        sa.CheckConstraint(
            "source IN ('manual', 'scheduled', 'retry', 'requeue')",
            name=op.f("ck_taskflow_tasks_source"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_taskflow_tasks")),
    )
    indexes = {
        "ix_taskflow_tasks_created": ["created_at", "id"],
        "ix_taskflow_tasks_status_created": ["status", "created_at"],
        "ix_taskflow_tasks_func_created": ["func_name", "created_at"],
        "ix_taskflow_tasks_finished": ["finished_at"],
    }
    for name, columns in indexes.items():
        op.create_index(op.f(name), "taskflow_tasks", columns, unique=False)
    # Partial where the dialect allows it: only active rows, so they stay small.
    active_only = sa.text("status IN ('pending', 'running')")
    op.create_index(
        op.f("ix_taskflow_tasks_claim"),
        "taskflow_tasks",
        ["status", "priority", "run_at"],
        unique=False,
        postgresql_where=active_only,
        sqlite_where=active_only,
    )
    op.create_index(
        op.f("ix_taskflow_tasks_lease"),
        "taskflow_tasks",
        ["owner", "lease_expires_at"],
        unique=False,
        postgresql_where=active_only,
        sqlite_where=active_only,
    )
    scheduled_only = sa.text("schedule_name IS NOT NULL")
    op.create_index(
        op.f("uq_taskflow_tasks_schedule_slot"),
        "taskflow_tasks",
        ["schedule_name", "scheduled_for"],
        unique=True,
        postgresql_where=scheduled_only,
        sqlite_where=scheduled_only,
    )


def _create_task_logs() -> None:
    op.create_table(
        "taskflow_task_logs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("message", _long_text(), nullable=False),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["taskflow_tasks.id"],
            name=op.f("fk_taskflow_task_logs_task_id_taskflow_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_taskflow_task_logs")),
    )
    op.create_index(
        op.f("ix_taskflow_task_logs_task"), "taskflow_task_logs", ["task_id", "id"], unique=False
    )


def _create_others() -> None:
    op.create_table(
        "taskflow_idempotency_keys",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_taskflow_idempotency_keys")),
    )
    op.create_table(
        "taskflow_schedules",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("trigger", sa.String(length=255), nullable=False),
        sa.Column("every_seconds", sa.Double(), nullable=True),
        sa.Column("cron", sa.String(length=255), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("next_run_at", _utc_datetime(), nullable=True),
        sa.Column("last_run_at", _utc_datetime(), nullable=True),
        sa.Column("last_task_id", sa.String(length=36), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("updated_at", _utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_taskflow_schedules")),
    )
    op.create_table(
        "taskflow_instances",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", _utc_datetime(), nullable=False),
        sa.Column("heartbeat_at", _utc_datetime(), nullable=False),
        sa.Column("stopped_at", _utc_datetime(), nullable=True),
        sa.Column("version", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_taskflow_instances")),
    )
    op.create_index(
        op.f("ix_taskflow_instances_heartbeat"),
        "taskflow_instances",
        ["heartbeat_at"],
        unique=False,
    )
    op.create_table(
        "taskflow_audit",
        sa.Column("id", _auto_id(), autoincrement=True, nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=True),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_taskflow_audit")),
    )
    op.create_index(
        op.f("ix_taskflow_audit_created"), "taskflow_audit", ["created_at"], unique=False
    )


def upgrade() -> None:
    _create_tasks()
    _create_task_logs()
    _create_others()


def downgrade() -> None:
    # Dropping a table drops its indexes and constraints; the logs go before
    # the tasks their foreign key references.
    for table in (
        "taskflow_audit",
        "taskflow_instances",
        "taskflow_schedules",
        "taskflow_idempotency_keys",
        "taskflow_task_logs",
        "taskflow_tasks",
    ):
        op.drop_table(table)
