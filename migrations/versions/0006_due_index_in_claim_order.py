"""The claim's index in the claim's own order.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

A claim takes the due pending rows highest priority first (unset last),
oldest first among equals.  The index it used held ``priority`` ascending,
which no scan direction turns into that order, so every claim read and
sorted every pending row: about 20 ms a claim with 20,000 rows queued on
PostgreSQL, growing with the queue.  The new index holds ``priority``
descending with NULLs last and ``run_at`` ascending, so a claim reads the
first rows of it and stops.  Partial (active rows only) where the dialect
allows, as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE_ONLY = "status IN ('pending', 'running')"
TABLE = "taskflow_tasks"
OLD_INDEX = "ix_taskflow_tasks_claim"
NEW_INDEX = "ix_taskflow_tasks_due"


def _priority_first() -> sa.TextClause:
    nulls_last = " NULLS LAST" if op.get_context().dialect.name == "postgresql" else ""
    return sa.text(f"priority DESC{nulls_last}")


def _existing() -> set[str]:
    context = op.get_context()
    if context.as_sql:
        return {OLD_INDEX}  # an offline script upgrades from 0005
    if context.dialect.name == "postgresql":
        # A statistics rebuild of 0002 in this same transaction may keep a
        # server-side cursor open, and PostgreSQL refuses to change the
        # indexes of a table that a cursor still reads.
        op.execute("CLOSE ALL")
    return {str(index["name"]) for index in sa.inspect(op.get_bind()).get_indexes(TABLE)}


def upgrade() -> None:
    existing = _existing()
    if NEW_INDEX not in existing:
        op.create_index(
            NEW_INDEX,
            TABLE,
            ["status", _priority_first(), "run_at"],
            unique=False,
            postgresql_where=sa.text(ACTIVE_ONLY),
            sqlite_where=sa.text(ACTIVE_ONLY),
        )
    if OLD_INDEX in existing:
        op.drop_index(OLD_INDEX, table_name=TABLE)


def downgrade() -> None:
    op.create_index(
        OLD_INDEX,
        TABLE,
        ["status", "priority", "run_at"],
        unique=False,
        postgresql_where=sa.text(ACTIVE_ONLY),
        sqlite_where=sa.text(ACTIVE_ONLY),
    )
    op.drop_index(NEW_INDEX, table_name=TABLE)
