"""An index of retries by the task they retry.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

Retrying every failure of a window skips the failures that were retried
already (their newer attempt stands for them), which means looking retries
up by ``retried_from`` a page of failures at a time.  Without an index each
look-up read the whole table.  On PostgreSQL and SQLite the index is partial
and holds only retries, so inserting an ordinary task does not touch it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RETRIES_ONLY = "retried_from IS NOT NULL"
INDEX = "ix_taskflow_tasks_retried_from"
TABLE = "taskflow_tasks"


def upgrade() -> None:
    context = op.get_context()
    if not context.as_sql:
        existing = {index["name"] for index in sa.inspect(op.get_bind()).get_indexes(TABLE)}
        if INDEX in existing:
            return  # tables made by this taskflow's create_all, adopted as 0003
        if context.dialect.name == "postgresql":
            # Upgrading from base runs 0002's statistics rebuild in this same
            # transaction, and its server-side cursor stays open until the end:
            # PostgreSQL refuses an index on a table a cursor still reads.
            op.execute("CLOSE ALL")
    op.create_index(
        INDEX,
        TABLE,
        ["retried_from"],
        unique=False,
        postgresql_where=sa.text(RETRIES_ONLY),
        sqlite_where=sa.text(RETRIES_ONLY),
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name=TABLE)
