"""Alembic from code: upgrade, downgrade, current revision and drift checks on an AsyncEngine.

``migrations/env.py`` and :func:`check` share the options built here (version
table, ``taskflow_*`` filters, type comparison), so ``alembic check``,
``taskflow db check`` and the test suite agree on what a difference is.
"""

from __future__ import annotations

import importlib.util
import re
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import CheckConstraint, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.schema import Column, SchemaItem, Table
from sqlalchemy.types import TypeEngine

from taskflow.db.engine import WRITE_OPTION
from taskflow.db.revision import VERSION_TABLE
from taskflow.db.tables import metadata
from taskflow.exceptions import TaskflowError

TABLE_PREFIX = "taskflow_"
MIGRATION_LOCK_TIMEOUT_S = 300
# Tables made by ``metadata.create_all`` that match the models are adopted as
# this revision, then upgraded (see ``_adopt_unversioned``).
ADOPTED_REVISION = "0003"
# What later revisions add and an older taskflow's create_all lacked: such
# tables are adopted all the same, and the upgrade adds it.
ADDED_SINCE_ADOPTED = (
    "add_index ix_taskflow_tasks_retried_from ",
    "add_index ix_taskflow_tasks_due ",
    "remove_index ix_taskflow_tasks_claim ",
    "modify_type taskflow_tasks.tags: database has JSON, models want JSONB",
    "modify_type taskflow_task_logs.extra: database has JSON, models want JSONB",
    "modify_type taskflow_audit.detail: database has JSON, models want JSONB",
    "add_table taskflow_run_keys",
    "add_index ix_taskflow_run_keys_task_id ",
)
# Every index of taskflow's is named so; others on its tables (a GIN index a
# user adds on tags) are the user's, not a difference from the models.
OWN_INDEX_PREFIXES = ("ix_taskflow_", "uq_taskflow_")
_LOCK_NAME = "taskflow_migrations"
# pg_advisory_xact_lock takes a bigint; derive a stable one from the name.
_PG_LOCK_KEY = zlib.crc32(_LOCK_NAME.encode())

_T = TypeVar("_T")


class MigrationError(TaskflowError, RuntimeError):
    """A migration could not run: scripts missing, or another process held the lock too long."""


def script_location() -> str:
    """The directory holding ``env.py`` and ``versions/``.

    An installed wheel ships it as the package ``taskflow._migrations``; a
    checkout (editable install or plain ``PYTHONPATH``) has it at the
    repository's top-level ``migrations/``.
    """
    try:
        spec = importlib.util.find_spec("taskflow._migrations")
    except ImportError:
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            if (Path(location) / "env.py").is_file():
                return str(location)
    checkout = Path(__file__).resolve().parents[2] / "migrations"
    if (checkout / "env.py").is_file():
        return str(checkout)
    raise MigrationError(
        "taskflow's migration scripts are missing (neither the taskflow._migrations package "
        'nor a checkout\'s migrations/ directory was found): reinstall "taskflow-sql"'
    )


def make_config(connection: Connection | None = None) -> Config:
    """An Alembic ``Config`` for taskflow's scripts; ``connection`` is used by ``env.py`` as is."""
    config = Config()
    # ConfigParser interpolates '%': escape it in a path that happens to contain one.
    config.set_main_option("script_location", script_location().replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    """The newest revision shipped with this version of taskflow."""
    return ScriptDirectory.from_config(make_config()).get_current_head()


# --- what Alembic compares: only taskflow's tables, types judged by their DDL ---


def include_name(name: str | None, type_: str, parent_names: Mapping[str, str | None]) -> bool:
    """Reflect only ``taskflow_*`` tables of the default schema: users share the database."""
    if type_ == "schema":
        return name is None
    if type_ == "table":
        return name is not None and name.startswith(TABLE_PREFIX) and name != VERSION_TABLE
    return True


def include_object(
    obj: SchemaItem, name: str | None, type_: str, reflected: bool, compare_to: SchemaItem | None
) -> bool:
    """Compare only ``taskflow_*`` tables, and of their indexes only taskflow's own."""
    if type_ == "table":
        return name is not None and name.startswith(TABLE_PREFIX) and name != VERSION_TABLE
    if type_ == "index" and reflected:
        return name is not None and name.startswith(OWN_INDEX_PREFIXES)
    return True


_MYSQL_INT_WIDTH = re.compile(r"\b(tinyint|smallint|mediumint|int|integer|bigint)\(\d+\)")
_CHARSET = re.compile(r"\s+(character set|collate) \w+")


def _normalized_ddl(type_: TypeEngine[Any], context: MigrationContext) -> str:
    # compile() resolves variants and TypeDecorators to this dialect's real type.
    return " ".join(type_.compile(dialect=context.dialect).lower().split())


def _mysql_equivalent(metadata_ddl: str, inspected_ddl: str, is_mariadb: bool) -> bool:
    # MariaDB's JSON is an alias of LONGTEXT with a binary collation (plus a
    # json_valid() check), and is reflected as such.
    if is_mariadb and metadata_ddl == "json":
        json_alias = r"longtext( character set \w+)? collate \w+_bin"
        return re.fullmatch(json_alias, inspected_ddl) is not None
    if metadata_ddl in ("bool", "boolean"):
        return inspected_ddl == "tinyint(1)"
    inspected_ddl = _MYSQL_INT_WIDTH.sub(r"\1", inspected_ddl)  # display widths mean nothing
    if not _CHARSET.search(metadata_ddl):  # the table's default charset, as Alembic assumes
        inspected_ddl = _CHARSET.sub("", inspected_ddl)
    return metadata_ddl == inspected_ddl


def compare_type(
    context: MigrationContext,
    inspected_column: Column[Any],
    metadata_column: Column[Any],
    inspected_type: TypeEngine[Any],
    metadata_type: TypeEngine[Any],
) -> bool:
    """Whether a column's type differs, judged by the DDL each side produces on this dialect.

    Stricter than Alembic's default, which misses e.g. ``DATETIME`` against
    ``DATETIME(6)`` (lost microseconds on MySQL); the only equivalences allowed
    are the reflection aliases of MySQL/MariaDB: integer display widths,
    ``BOOL`` as ``TINYINT(1)``, MariaDB's ``JSON`` as binary ``LONGTEXT``.
    """
    metadata_ddl = _normalized_ddl(metadata_type, context)
    inspected_ddl = _normalized_ddl(inspected_type, context)
    if metadata_ddl == inspected_ddl:
        return False
    if context.dialect.name in ("mysql", "mariadb"):
        is_mariadb = bool(getattr(context.dialect, "is_mariadb", False))
        return not _mysql_equivalent(metadata_ddl, inspected_ddl, is_mariadb)
    return True


def context_options(dialect_name: str) -> dict[str, Any]:
    """The options ``env.py`` and :func:`check` pass to Alembic's ``MigrationContext``."""
    return {
        "version_table": VERSION_TABLE,
        "target_metadata": metadata,
        "include_name": include_name,
        "include_object": include_object,
        "compare_type": compare_type,
        "render_as_batch": dialect_name == "sqlite",
    }


# --- running on an AsyncEngine ---


def _acquire_lock(conn: Connection) -> None:
    # Two processes migrating at once must queue, not both CREATE TABLE.
    # SQLite: BEGIN IMMEDIATE (see run_exclusive) already holds the write lock.
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    elif dialect in ("mysql", "mariadb"):
        got = conn.execute(
            text("SELECT GET_LOCK(:name, :timeout)"),
            {"name": _LOCK_NAME, "timeout": MIGRATION_LOCK_TIMEOUT_S},
        ).scalar()
        if got != 1:
            raise MigrationError(
                f"another process held the migration lock for {MIGRATION_LOCK_TIMEOUT_S}s"
            )


def _release_lock(conn: Connection) -> None:
    # pg_advisory_xact_lock ends with the transaction; MySQL's GET_LOCK is per session.
    if conn.dialect.name in ("mysql", "mariadb") and not conn.invalidated:
        conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": _LOCK_NAME})
        conn.commit()


def run_exclusive(conn: Connection, work: Callable[[Connection], _T]) -> _T:
    """Run ``work`` in one transaction on ``conn``, holding taskflow's migration lock.

    Alembic then sees an external transaction and leaves it to us: on SQLite
    and PostgreSQL an upgrade is all or nothing, and the lock also covers
    reading the current version, so a second process finds the work done.
    """
    # On SQLite this option makes the transaction start with BEGIN IMMEDIATE.
    conn.execution_options(**{WRITE_OPTION: True})
    try:
        with conn.begin():
            _acquire_lock(conn)
            return work(conn)
    finally:
        _release_lock(conn)


async def _run_command(engine: AsyncEngine, action: Callable[[Config], None]) -> None:
    def work(conn: Connection) -> None:
        action(make_config(conn))

    async with engine.connect() as conn:
        await conn.run_sync(run_exclusive, work)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Upgrade the database to ``revision`` (default: the newest)."""
    await _run_command(engine, lambda config: command.upgrade(config, revision))


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Downgrade the database to ``revision`` (``"base"`` removes every taskflow table)."""
    await _run_command(engine, lambda config: command.downgrade(config, revision))


def _current(conn: Connection) -> str | None:
    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


async def current(engine: AsyncEngine) -> str | None:
    """The database's revision, or ``None`` when taskflow's migrations never ran there."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


def _show(value: Any, conn: Connection) -> str:
    if isinstance(value, TypeEngine):
        return value.compile(dialect=conn.dialect)
    return repr(value)


def _object_name(obj: Any) -> str:
    if isinstance(obj, Table):
        return obj.name
    table = getattr(obj, "table", None)
    columns = ", ".join(c.name for c in getattr(obj, "columns", ()))
    where = f" on {table.name}({columns})" if table is not None else ""
    return f"{obj.name or '(unnamed)'}{where}"


def _describe(diff: Any, conn: Connection) -> str:
    """One line for one of ``compare_metadata``'s diff tuples."""
    if isinstance(diff, list):  # a column's modifications come grouped
        return "; ".join(_describe(item, conn) for item in diff)
    op, *args = diff
    if op.startswith("modify_"):
        _schema, table, column, _existing, in_database, in_models = args
        return (
            f"{op} {table}.{column}: database has {_show(in_database, conn)}, "
            f"models want {_show(in_models, conn)}"
        )
    if op in ("add_column", "remove_column"):
        _schema, table, column = args
        return f"{op} {table}.{column.name}"
    return f"{op} {_object_name(args[-1])}"


def _check_constraint_differences(conn: Connection) -> list[str]:
    # Alembic's autogenerate does not compare CHECK constraints: compare our
    # named ones (ck_*) here.  Unnamed or foreign ones (MariaDB adds json_valid()
    # checks named after the JSON column) are not ours to judge.
    inspector = inspect(conn)
    existing_tables = set(inspector.get_table_names())
    differences: list[str] = []
    for table in metadata.sorted_tables:
        if table.name not in existing_tables:
            continue
        expected = {str(c.name) for c in table.constraints if isinstance(c, CheckConstraint)}
        found = {
            str(c["name"])
            for c in inspector.get_check_constraints(table.name)
            if str(c["name"]).startswith("ck_")
        }
        differences += [f"add_check_constraint {n} on {table.name}" for n in expected - found]
        differences += [f"remove_check_constraint {n} on {table.name}" for n in found - expected]
    return sorted(differences)


def _check(conn: Connection) -> list[str]:
    context = MigrationContext.configure(conn, opts=context_options(conn.dialect.name))
    differences = [_describe(diff, conn) for diff in compare_metadata(context, metadata)]
    return differences + _check_constraint_differences(conn)


async def check(engine: AsyncEngine) -> list[str]:
    """The differences between taskflow's models and the database; empty when in sync."""
    async with engine.connect() as conn:
        return await conn.run_sync(_check)


async def ensure_schema(engine: AsyncEngine) -> None:
    """Bring the database to the newest revision; a no-op when it is there already.

    Safe when several processes start at once: the whole decision (read the
    revision, upgrade, or adopt tables made by ``metadata.create_all``) runs
    under a lock (the SQLite write lock taken by ``BEGIN IMMEDIATE``, a
    PostgreSQL advisory lock, MySQL's ``GET_LOCK``), so later processes find
    the work done, even on MySQL where DDL is not transactional.

    Raises:
        MigrationError: the database was migrated by a newer taskflow, or has
            taskflow tables that differ from the models and no revision.
    """
    scripts = ScriptDirectory.from_config(make_config())
    head = scripts.get_current_head()
    if await current(engine) == head:
        return  # the common case, without taking the lock

    def decide_and_migrate(conn: Connection) -> None:
        revision = _current(conn)
        if revision == head:
            return
        if revision is None and inspect(conn).has_table("taskflow_tasks"):
            _adopt_unversioned(conn)
            return
        if revision is not None:
            try:
                scripts.get_revision(revision)
            except CommandError as exc:
                raise MigrationError(
                    f"the database is at revision {revision!r}, unknown to this taskflow "
                    f"(newest: {head!r}): it was migrated by a newer taskflow-sql; upgrade it"
                ) from exc
        command.upgrade(make_config(conn), "head")

    async with engine.connect() as conn:
        await conn.run_sync(run_exclusive, decide_and_migrate)


def _adopt_unversioned(conn: Connection) -> None:
    """Stamp tables made without migrations (``metadata.create_all``) if they match the models."""
    differences = [d for d in _check(conn) if not d.startswith(ADDED_SINCE_ADOPTED)]
    if differences:
        raise MigrationError(
            "taskflow's tables exist but were not created by its migrations, and differ "
            "from the models: " + "; ".join(differences[:5]) + ". Drop them, or bring them "
            "in line and run `taskflow db check`"
        )
    # Stamped as the newest revision whose schema such tables certainly have,
    # then upgraded: 0004 rewrites constraint text that an older taskflow's
    # create_all wrote as IN lists (and changes nothing where it is current).
    command.stamp(make_config(conn), ADOPTED_REVISION)
    command.upgrade(make_config(conn), "head")
