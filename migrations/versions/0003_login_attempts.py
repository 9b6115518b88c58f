"""Login attempts, counted across instances.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

``taskflow_login_attempts`` holds the dashboard login attempts of the last
minute that have not succeeded, one row each, so the login throttle counts
them for every instance at once: N instances no longer allow a client N times
the guesses.  The client is stored as a digest of its address.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc_datetime() -> sa.types.TypeEngine[Any]:
    return (
        sa.DateTime()
        .with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
        .with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    )


def _auto_id() -> sa.types.TypeEngine[Any]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "taskflow_login_attempts",
        sa.Column("id", _auto_id(), autoincrement=True, nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("attempted_at", _utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_taskflow_login_attempts")),
    )
    op.create_index(
        "ix_taskflow_login_attempts_client",
        "taskflow_login_attempts",
        ["client", "attempted_at"],
        unique=False,
    )
    op.create_index(
        "ix_taskflow_login_attempts_at", "taskflow_login_attempts", ["attempted_at"], unique=False
    )


def downgrade() -> None:
    op.drop_table("taskflow_login_attempts")
