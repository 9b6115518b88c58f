"""Admin sessions and the task statistics roll-up.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

``taskflow_admin_sessions`` holds dashboard logins, so a logout revokes a
session on every instance and any instance can check a cookie.
``taskflow_task_stats`` holds per-function counts and duration histograms of
finished tasks, kept up to date in the same transactions that finish or
delete tasks, so ``/tasks/metrics`` reads a few hundred rows instead of the
whole history.  ``stripe`` spreads the counters of concurrent instances over
separate rows, so their commits never queue behind one hot row.  The upgrade
counts the tasks that finished before it (the same code as ``taskflow db
rebuild-stats``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc_datetime() -> sa.types.TypeEngine[Any]:
    return (
        sa.DateTime()
        .with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
        .with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    )


def upgrade() -> None:
    op.create_table(
        "taskflow_admin_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.Column("expires_at", _utc_datetime(), nullable=False),
        sa.Column("revoked_at", _utc_datetime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_taskflow_admin_sessions")),
    )
    op.create_index(
        op.f("ix_taskflow_admin_sessions_expires_at"),
        "taskflow_admin_sessions",
        ["expires_at"],
        unique=False,
    )
    op.create_table(
        "taskflow_task_stats",
        sa.Column("func_name", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("stripe", sa.Integer(), nullable=False),
        sa.Column("task_count", sa.BigInteger(), nullable=False),
        sa.Column("duration_sum", sa.Double(), nullable=False),
        sa.Column("duration_min", sa.Double(), nullable=True),
        sa.Column("duration_max", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint(
            "func_name", "status", "bucket", "stripe", name=op.f("pk_taskflow_task_stats")
        ),
    )
    _backfill_task_stats()


def _backfill_task_stats() -> None:
    # Tasks finished before this revision are counted now, in the migration's
    # transaction.  An offline SQL script cannot run Python: after applying
    # one, run `taskflow db rebuild-stats`.
    if op.get_context().as_sql:
        return
    from taskflow.repository.sql.stats import rebuild_on_connection

    rebuild_on_connection(op.get_bind())


def downgrade() -> None:
    op.drop_table("taskflow_task_stats")
    op.drop_table("taskflow_admin_sessions")
