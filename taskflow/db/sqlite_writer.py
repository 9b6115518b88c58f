"""Group commits to a SQLite file, executed on the event-loop thread.

aiosqlite runs every statement in a helper thread; on a busy event loop that
thread waits for the GIL at every hand-over (5 ms each by default), so one
commit of a few rows can take tens of milliseconds and the write buffer
backs up exactly when load is highest.  A WAL commit with
``synchronous=NORMAL`` writes to the log without fsync and costs tens of
microseconds, so doing it inline is cheaper than any hand-over.

To never block the loop on another process's lock, the inline attempt uses
``busy_timeout=0``; if the database is locked, the same batch is applied in a
worker thread that waits for the lock as long as the normal busy timeout.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Dialect

from taskflow.db.batch import BatchStatements, datetime_converter
from taskflow.db.engine import SQLITE_BUSY_TIMEOUT_MS
from taskflow.models import TaskRecord
from taskflow.repository.base import WriteBatch


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message


class SqliteInlineWriter:
    """Applies write batches through one stdlib ``sqlite3`` connection."""

    def __init__(self, path: str, statements: BatchStatements, dialect: Dialect) -> None:
        self._path = path
        self._statements = statements
        self._dialect = dialect
        self._conn: sqlite3.Connection | None = None
        # One connection, used by batches and claims: never two transactions at
        # once, even when a locked database sends one of them to a thread.
        self._in_use = asyncio.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._conn = conn
        return self._conn

    async def apply(self, batch: WriteBatch) -> set[str]:
        """Commit the batch; returns the ids of updates fenced out by their epoch guard."""
        async with self._in_use:
            try:
                return self._apply(batch, busy_timeout_ms=0)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
            return await asyncio.to_thread(self._apply, batch, SQLITE_BUSY_TIMEOUT_MS)

    def _apply(self, batch: WriteBatch, busy_timeout_ms: int) -> set[str]:
        conn = self._connection()
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        statements = self._statements
        conn.execute("BEGIN IMMEDIATE")
        try:
            if batch.inserts:
                conn.executemany(statements.insert_task_sql, statements.task_rows(batch.inserts))
            fenced = self._apply_updates(conn, batch.updates) if batch.updates else set()
            if batch.logs:
                conn.executemany(statements.insert_log_sql, statements.log_rows(batch.logs))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return fenced

    def _apply_updates(self, conn: sqlite3.Connection, records: list[TaskRecord]) -> set[str]:
        rows = self._statements.update_rows(records)
        cursor = conn.executemany(self._statements.update_task_sql, rows)
        if cursor.rowcount == len(rows):
            return set()
        expected = {r.task_id: r.lease_epoch for r in records}
        marks = ",".join("?" * len(expected))
        found: dict[Any, Any] = dict(
            conn.execute(
                f"SELECT id, lease_epoch FROM taskflow_tasks WHERE id IN ({marks})",
                list(expected),
            ).fetchall()
        )
        return {tid for tid, epoch in expected.items() if found.get(tid) != epoch}

    async def execute_returning(self, statement: Any) -> list[tuple[Any, ...]]:
        """Run one write statement with RETURNING in its own transaction (claims)."""
        compiled = statement.compile(dialect=self._dialect)
        convert = datetime_converter(self._dialect)
        params = [
            convert(value) if isinstance(value, datetime) else value
            for value in (compiled.params[name] for name in compiled.positiontup or ())
        ]
        async with self._in_use:
            try:
                return self._returning(compiled.string, params, busy_timeout_ms=0)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
            return await asyncio.to_thread(
                self._returning, compiled.string, params, SQLITE_BUSY_TIMEOUT_MS
            )

    def _returning(
        self, sql: str, params: list[Any], busy_timeout_ms: int
    ) -> list[tuple[Any, ...]]:
        conn = self._connection()
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows = conn.execute(sql, params).fetchall()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return rows

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
