"""Run keys of one-off tasks (``schedule_once()``).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08

``taskflow_run_keys`` maps each run key to the task it armed last.  The
task itself is an ordinary ``pending`` row of ``taskflow_tasks`` with its
``run_at``; the key's primary key is what makes re-arming one key from two
instances at once leave exactly one armed task.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "taskflow_run_keys"


def _utc_datetime() -> sa.types.TypeEngine[Any]:
    return (
        sa.DateTime()
        .with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
        .with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    )


def upgrade() -> None:
    context = op.get_context()
    if not context.as_sql and sa.inspect(op.get_bind()).has_table(TABLE):
        return  # tables made by this taskflow's create_all, adopted as 0003
    op.create_table(
        TABLE,
        sa.Column("run_key", sa.String(length=255), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("run_key", name=op.f("pk_taskflow_run_keys")),
    )
    op.create_index(op.f("ix_taskflow_run_keys_task_id"), TABLE, ["task_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_taskflow_run_keys_task_id"), table_name=TABLE)
    op.drop_table(TABLE)
