"""Every difference between SQL dialects, named for what it means.

The repository asks these questions instead of testing dialect names itself,
so adding a dialect means reading one file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Dialect


def is_postgresql(dialect: Dialect) -> bool:
    return dialect.name == "postgresql"


def is_mysql(dialect: Dialect) -> bool:
    return dialect.name in ("mysql", "mariadb")


def is_sqlite(dialect: Dialect) -> bool:
    return dialect.name == "sqlite"


def positional_parameter(dialect: Dialect, number: int) -> str:
    """The ``number``-th parameter of hand-written PostgreSQL: ``$n`` (asyncpg) or ``%s``.

    psycopg's ``%s`` has no number, so a statement written with this must use
    each parameter once, in order.
    """
    return "%s" if dialect.paramstyle == "format" else f"${number}"


# PostgreSQL array type of each column the group commit's update sets, in
# MUTABLE_COLUMNS order, then the guard's id and epoch.
_PG_UPDATE_ARRAYS = (
    ("status", "varchar"),
    ("executor", "varchar"),
    ("attempt", "int"),
    ("run_at", "timestamptz"),
    ("updated_at", "timestamptz"),
    ("started_at", "timestamptz"),
    ("finished_at", "timestamptz"),
    ("duration_ms", "float8"),
    ("error", "text"),
    ("stacktrace", "text"),
    ("result", "text"),
    ("owner", "varchar"),
    ("lease_expires_at", "timestamptz"),
    ("g_id", "varchar"),
    ("g_epoch", "int"),
)


def set_update_returning_applied(dialect: Dialect, table: str, active_only: str) -> str | None:
    """One statement that applies a batch of guarded updates and returns the ids it changed.

    PostgreSQL only (None elsewhere): the batch travels as one array per
    column (``unnest``), so the update and the answer to "which applied" are
    one round trip instead of an executemany plus a read-back.  The rows are
    locked in id order first, the order every other writer of these rows
    uses, so two transactions cannot deadlock on a pair of them.
    """
    if not is_postgresql(dialect):
        return None
    arrays, names, _count = pg_update_arrays(dialect, 1)
    return (
        f"WITH v AS (SELECT * FROM unnest({arrays}) AS v({names})), "
        f"locked AS (SELECT t.id FROM {table} AS t JOIN v ON t.id = v.g_id "
        "ORDER BY t.id FOR UPDATE OF t) "
        f"UPDATE {table} AS t SET {pg_update_set_clause()} "
        "FROM v JOIN locked ON locked.id = v.g_id "
        f"WHERE t.id = v.g_id AND t.lease_epoch = v.g_epoch AND t.{active_only} "
        "RETURNING t.id"
    )


def pg_update_arrays(dialect: Dialect, first: int) -> tuple[str, str, int]:
    """PostgreSQL: the update's array parameters from ``$first`` on, their names, and how many."""
    arrays = ", ".join(
        f"{positional_parameter(dialect, n)}::{kind}[]"
        for n, (_name, kind) in enumerate(_PG_UPDATE_ARRAYS, first)
    )
    names = ", ".join(name for name, _kind in _PG_UPDATE_ARRAYS)
    return arrays, names, len(_PG_UPDATE_ARRAYS)


def pg_update_set_clause() -> str:
    """PostgreSQL: the SET list of the guarded update, from the unnested row ``v``."""
    return ", ".join(_pg_set(name) for name, _kind in _PG_UPDATE_ARRAYS[:-2])


def _pg_set(name: str) -> str:
    if name == "result":
        return "result = v.result::json"
    if name == "lease_expires_at":
        # A write that waited never moves a lease back past the heartbeat's
        # renewal; a finished task's NULL still clears it.
        return (
            "lease_expires_at = CASE WHEN v.lease_expires_at IS NULL THEN NULL "
            "ELSE GREATEST(t.lease_expires_at, v.lease_expires_at) END"
        )
    return f"{name} = v.{name}"


def reports_executemany_rowcount(dialect: Dialect) -> bool:
    """Whether an executemany UPDATE reports the total of matched rows.

    When it does, a total equal to the batch size proves every guarded
    update applied and no read-back is needed.
    """
    return bool(dialect.supports_sane_multi_rowcount)


def supports_skip_locked(dialect: Dialect) -> bool:
    """``SELECT ... FOR UPDATE SKIP LOCKED``: PostgreSQL 9.5+, MySQL 8+, MariaDB 10.6+."""
    if is_postgresql(dialect):
        return True
    if is_mysql(dialect):
        version = dialect.server_version_info or ()
        if getattr(dialect, "is_mariadb", False):
            return tuple(version[:2]) >= (10, 6)
        return tuple(version[:1]) >= (8,)
    return False


def supports_update_returning(dialect: Dialect) -> bool:
    """``UPDATE ... RETURNING``: PostgreSQL and SQLite 3.35+, not MySQL/MariaDB."""
    return bool(dialect.update_returning)


def priority_first(dialect: Dialect, column: Any) -> Any:
    """Highest priority first, unset (NULL) priorities last, on every dialect.

    NULL sorts as the largest value on PostgreSQL and the smallest elsewhere,
    so only PostgreSQL needs ``NULLS LAST`` (which MySQL cannot parse).
    """
    if is_postgresql(dialect):
        return column.desc().nulls_last()
    return column.desc()


def claim_with_update_returning(dialect: Dialect) -> bool:
    """Whether a claim is one ``UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING``.

    PostgreSQL (with ``FOR UPDATE SKIP LOCKED`` in the subquery) and SQLite
    (inside ``BEGIN IMMEDIATE``, which serialises writers) can; MySQL and
    MariaDB allow neither ``LIMIT`` in an ``IN`` subquery nor ``UPDATE ...
    RETURNING``, so they select with ``SKIP LOCKED``, update, then read back.
    """
    return is_postgresql(dialect) or is_sqlite(dialect)


def insert_ignoring_duplicates(dialect: Dialect, table: Any) -> Any:
    """An INSERT that silently skips rows whose key exists, without an error.

    On PostgreSQL a duplicate-key error aborts the whole transaction, so the
    conflict must never be raised: ``ON CONFLICT DO NOTHING`` there and on
    SQLite, ``INSERT IGNORE`` on MySQL/MariaDB.  The rowcount says who won;
    SQLAlchemy keeps an INSERT's rowcount from psycopg only when asked to
    (``preserve_rowcount``), also on an engine of the caller's own.
    """
    if is_postgresql(dialect):
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        statement: Any = pg_insert(table).on_conflict_do_nothing()
    elif is_sqlite(dialect):
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(table).on_conflict_do_nothing()
    else:
        from sqlalchemy import insert

        statement = insert(table).prefix_with("IGNORE")
    return statement.execution_options(preserve_rowcount=True)


def skip_same_id_clause(dialect: Dialect) -> str:
    """The clause that makes an INSERT a no-op for rows whose ``id`` exists already.

    Unlike ``INSERT IGNORE`` / ``INSERT OR IGNORE``, other violations (a CHECK,
    a NOT NULL, truncation) still raise.
    """
    if is_postgresql(dialect) or is_sqlite(dialect):
        return " ON CONFLICT (id) DO NOTHING"
    return " ON DUPLICATE KEY UPDATE id = id"


def upsert_adding(
    dialect: Dialect,
    table: Any,
    *,
    keys: Sequence[str],
    added: Sequence[str],
    least: Sequence[str],
    greatest: Sequence[str],
) -> Any:
    """An INSERT that, when the key exists, adds to its counters instead.

    ``added`` columns become ``old + new``; ``least`` / ``greatest`` keep the
    smaller / larger value, and a NULL on either side keeps the other, so a
    row with NULL extremes (a decrement) leaves them as they were.  PostgreSQL
    and SQLite: ``ON CONFLICT DO UPDATE`` with ``excluded``; MySQL/MariaDB:
    ``ON DUPLICATE KEY UPDATE``.  PostgreSQL's LEAST/GREATEST skip NULLs;
    SQLite's two-argument min()/max() and MySQL's LEAST/GREATEST return NULL
    if either is NULL, hence the COALESCE there.
    """
    from sqlalchemy import func

    def keep(which: str, old: Any, new: Any) -> Any:
        if is_postgresql(dialect):  # LEAST/GREATEST skip NULLs there
            return getattr(func, which)(old, new)
        name = {"least": "min", "greatest": "max"}[which] if is_sqlite(dialect) else which
        return getattr(func, name)(func.coalesce(old, new), func.coalesce(new, old))

    def set_clause(new: Any) -> dict[str, Any]:
        values = {name: table.c[name] + new[name] for name in added}
        values.update({name: keep("least", table.c[name], new[name]) for name in least})
        values.update({name: keep("greatest", table.c[name], new[name]) for name in greatest})
        return values

    if is_postgresql(dialect):
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        pg_stmt = pg_insert(table)
        return pg_stmt.on_conflict_do_update(
            index_elements=list(keys), set_=set_clause(pg_stmt.excluded)
        )
    if is_sqlite(dialect):
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        sqlite_stmt = sqlite_insert(table)
        return sqlite_stmt.on_conflict_do_update(
            index_elements=list(keys), set_=set_clause(sqlite_stmt.excluded)
        )
    from sqlalchemy.dialects.mysql import insert as mysql_insert

    mysql_stmt = mysql_insert(table)
    return mysql_stmt.on_duplicate_key_update(set_clause(mysql_stmt.inserted))


def block_writers_sql(dialect: Dialect, table_name: str) -> str | None:
    """A statement that keeps other transactions from writing ``table_name`` until commit.

    PostgreSQL: ``LOCK TABLE ... IN EXCLUSIVE MODE`` (reads go on).  MySQL and
    MariaDB: a locking read of every row, whose next-key locks (REPEATABLE
    READ, the default) also block inserts.  SQLite: None, since write
    transactions begin with ``BEGIN IMMEDIATE`` and so are serialised already.
    """
    if is_postgresql(dialect):
        return f"LOCK TABLE {table_name} IN EXCLUSIVE MODE"
    if is_mysql(dialect):
        return f"SELECT 1 FROM {table_name} FOR UPDATE"
    return None


def written_by_this_transaction(dialect: Dialect) -> Any | None:
    """A column that is true for rows the current transaction has written, where one exists.

    PostgreSQL: a row version's ``xmin`` is the id of the transaction that
    wrote it (the low 32 bits of ``txid_current()``), so after a batch of
    guarded updates one read-back tells which applied, with no row locks
    taken beforehand.  None elsewhere: MySQL and SQLite report the
    executemany's rowcount instead.
    """
    if is_postgresql(dialect):
        from sqlalchemy import literal_column

        return literal_column("xmin::text::bigint = txid_current() % 4294967296")
    return None
