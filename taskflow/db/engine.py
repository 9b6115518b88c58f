"""Engine creation with the per-dialect connection settings taskflow relies on."""

from __future__ import annotations

import time
import weakref
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from taskflow.settings import DatabaseTarget

SQLITE_BUSY_TIMEOUT_MS = 30_000
WAL_SWITCH_RETRY_S = 0.02
CONNECT_TIMEOUT_S = 10


def _switch_to_wal(cursor: Any) -> None:
    # Switching a new database to WAL needs it to itself, and SQLite may answer
    # "database is locked" at once, without its busy handler, when several
    # processes open a new file together.  Only the first switch ever waits:
    # the mode is stored in the file, and later connections find it set.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:  # the driver's OperationalError, as the adapter raises it
            if "locked" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(WAL_SWITCH_RETRY_S)


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (the dashboard) run while the writer commits; NORMAL
    # synchronous is durable against process crashes, which is the failure we
    # promise to survive; busy_timeout makes concurrent instances queue, not fail.
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    _switch_to_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
    # Let BEGIN statements be ours (BEGIN IMMEDIATE for claims), not pysqlite's.
    dbapi_connection.isolation_level = None


WRITE_OPTION = "taskflow_write"


def _emit_begin(conn: Any) -> None:
    # Writes take SQLite's write lock up front (BEGIN IMMEDIATE) so two racing
    # instances queue on busy_timeout instead of failing with "database is
    # locked" half-way through; reads stay in autocommit and never block.
    if conn.get_execution_options().get(WRITE_OPTION):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine_for(target: DatabaseTarget, **options: Any) -> AsyncEngine:
    """Create the async engine for ``target`` with taskflow's connection settings.

    Write paths use ``engine.execution_options(taskflow_write=True)``; on
    SQLite that opens their transactions with ``BEGIN IMMEDIATE``.
    """
    if target.backend == "sqlite":
        if target.is_memory:
            # Every connection to :memory: is its own database, so there must be
            # exactly one; a pool of one (not StaticPool, which hands the same
            # connection to everyone at once) also keeps transactions apart.
            options.setdefault("poolclass", AsyncAdaptedQueuePool)
            options.setdefault("pool_size", 1)
            options.setdefault("max_overflow", 0)
        options.setdefault("connect_args", {"check_same_thread": False})
        engine = create_async_engine(target.url, **options)
        event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)
        event.listen(engine.sync_engine, "begin", _emit_begin)
        return engine
    # A server that stops answering must surface as an error, not a hang.
    connect_args = {**target.connect_args, **options.pop("connect_args", {})}
    if target.url.get_driver_name() == "asyncpg":
        connect_args.setdefault("timeout", CONNECT_TIMEOUT_S)
    else:  # aiomysql, and libpq under psycopg
        connect_args.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    if target.url.get_driver_name() == "psycopg":
        # Positional %s parameters, as asyncpg's $n: the group commit's
        # pre-compiled statements take rows as tuples (repository/sql/batch.py).
        options.setdefault("paramstyle", "format")
        # The rowcount of an INSERT says who won a race (ON CONFLICT DO
        # NOTHING); SQLAlchemy keeps psycopg's only when asked to.
        options["execution_options"] = {
            "preserve_rowcount": True,
            **options.get("execution_options", {}),
        }
    options["connect_args"] = connect_args
    options.setdefault("pool_pre_ping", True)
    options.setdefault("pool_size", 10)
    options.setdefault("max_overflow", 10)
    if target.backend == "mysql":
        options.setdefault("pool_recycle", 3600)
        # READ COMMITTED avoids the gap locks that make batched updates deadlock.
        options.setdefault("isolation_level", "READ COMMITTED")
    engine = create_async_engine(target.url, **options)
    if target.backend == "mysql" and connect_args.get("ssl") is not None:
        event.listen(engine.sync_engine, "connect", _require_tls)
    _connect_args[engine.sync_engine] = dict(connect_args)
    return engine


TLS_NOT_SET_UP = "TLS was not set up on this connection"


def _require_tls(dbapi_connection: Any, _record: Any) -> None:
    # aiomysql upgrades to TLS only when the server offers it, and otherwise
    # goes on in plain text, ssl-mode=REQUIRED or not: ask the server.
    cursor = dbapi_connection.cursor()
    cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
    row = cursor.fetchone()
    cursor.close()
    if not row or not row[1]:
        dbapi_connection.close()
        # A connection error, as a server without TLS looks to the other drivers:
        # the repository turns it into a ConfigurationError at startup.
        raise ConnectionError(f"{TLS_NOT_SET_UP}: the server offers no TLS")


# What each engine's connections are opened with, for connections made outside
# its pool (PostgreSQL's LISTEN connection): the URL alone lacks these.
_connect_args: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def connect_args_of(engine: AsyncEngine) -> dict[str, Any]:
    """The driver options ``create_engine_for`` gave ``engine`` beyond its URL."""
    return dict(_connect_args.get(engine.sync_engine, {}))
