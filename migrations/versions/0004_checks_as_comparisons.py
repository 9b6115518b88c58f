"""Status and source checks written as comparisons, not IN lists (SQLite).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

SQLite evaluates ``CHECK (status IN ('pending', ...))`` by building a
temporary B-tree of the list for every row inserted or updated: about a
third of SQLite's work for a task's insert and its final update, measured
with callgrind.  ``status = 'pending' OR status = 'running' OR ...`` accepts
exactly the same values and is evaluated in place.  The constraints keep
their names.

SQLite cannot alter a constraint, and a table rebuild would copy every row
of history.  The change is made instead as SQLite's documentation describes
for CHECK constraints ("Making Other Kinds Of Table Schema Changes"): the
stored table definition is rewritten in ``sqlite_schema`` and the schema
version bumped, in one transaction.  Every existing row satisfies the new
checks, since they accept the same values as the old ones.  Where SQLite
refuses to edit its schema (a connection in defensive mode), the IN lists
stay: they are only slower.

PostgreSQL and MySQL are left as they are.  An IN list costs them nothing
measurable, while recreating a CHECK constraint scans the table under an
exclusive lock on PostgreSQL and copies it on MySQL and MariaDB: a price for
no gain.  Their constraints keep revision 0001's text, which accepts the
same values as the models' (``metadata.create_all`` writes the comparisons).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from alembic import op
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

logger = logging.getLogger("taskflow.migrations")

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "taskflow_tasks"
CHECKED = {
    "ck_taskflow_tasks_status": (
        "status",
        ("pending", "running", "success", "failed", "interrupted", "cancelled"),
    ),
    "ck_taskflow_tasks_source": ("source", ("manual", "scheduled", "retry", "requeue")),
}


def _as_comparisons(column: str, values: tuple[str, ...]) -> str:
    return " OR ".join(f"{column} = '{value}'" for value in values)


def _as_in_list(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


def upgrade() -> None:
    _rewrite_checks(_as_comparisons)


def downgrade() -> None:
    _rewrite_checks(_as_in_list)


def _rewrite_checks(form: Callable[[str, tuple[str, ...]], str]) -> None:
    context = op.get_context()
    if context.dialect.name != "sqlite":
        return  # see the module docstring
    if context.as_sql:
        # An offline script cannot read the stored definition it must rewrite;
        # the checks then keep their IN lists, which accept the same values.
        return
    wanted = {name: form(column, values) for name, (column, values) in CHECKED.items()}
    _rewrite_sqlite_checks(op.get_bind(), wanted)


def _rewrite_sqlite_checks(conn: Connection, wanted: dict[str, str]) -> None:
    definition = conn.execute(
        text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :name"),
        {"name": TABLE},
    ).scalar_one()
    rewritten = definition
    for name, condition in wanted.items():
        rewritten = _replace_check(rewritten, name, condition)
    if rewritten == definition:
        return
    version = conn.execute(text("PRAGMA schema_version")).scalar_one()
    conn.execute(text("PRAGMA writable_schema = ON"))
    try:
        conn.execute(
            text("UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = :name"),
            {"sql": rewritten, "name": TABLE},
        )
    except DBAPIError as exc:
        # "table sqlite_master may not be modified": defensive mode.  Nothing
        # was changed (a failed statement is undone by itself).
        logger.warning(
            "taskflow migration 0004 left the CHECK constraints of %s as IN lists: SQLite "
            "refused to edit its schema (%s). They accept the same values, only more slowly",
            TABLE,
            exc.orig,
        )
        return
    else:
        conn.execute(text(f"PRAGMA schema_version = {int(version) + 1}"))
    finally:
        conn.execute(text("PRAGMA writable_schema = OFF"))
    # Parse the new definition now: a mistake must fail this migration, not a later query.
    conn.execute(text(f"SELECT COUNT(*) FROM pragma_table_info('{TABLE}')")).scalar_one()


def _replace_check(definition: str, name: str, condition: str) -> str:
    """The table definition with the body of CHECK constraint ``name`` replaced."""
    marker = f"CONSTRAINT {name} CHECK ("
    start = definition.find(marker)
    if start < 0:
        raise RuntimeError(f"{TABLE} has no CHECK constraint {name}: was it created by taskflow?")
    body = start + len(marker)
    depth, end = 1, body
    while depth:
        if end >= len(definition):
            raise RuntimeError(f"unbalanced parentheses in CHECK constraint {name}")
        depth += {"(": 1, ")": -1}.get(definition[end], 0)
        end += 1
    return f"{definition[:body]}{condition}{definition[end - 1 :]}"
