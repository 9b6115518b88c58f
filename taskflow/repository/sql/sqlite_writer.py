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

from taskflow.db.engine import SQLITE_BUSY_TIMEOUT_MS
from taskflow.models import TaskRecord
from taskflow.repository.base import WriteBatch
from taskflow.repository.sql.batch import (
    TASK_INSERT_COLUMNS,
    BatchStatements,
    count_finishing_updates,
    datetime_converter,
    finished_insert_rows,
    settle_updates,
)
from taskflow.repository.sql.mapping import MUTABLE_COLUMNS
from taskflow.repository.sql.sqlite_checkpoint import (
    BACKSTOP_CHECKPOINT_PAGES,
    BackgroundCheckpoints,
)
from taskflow.repository.sql.sqlite_nulls import NullLiteralStatement
from taskflow.repository.sql.stats import StatsDelta


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
        self._busy_timeout_ms: int | None = None
        self._checkpoints = BackgroundCheckpoints(path)
        self._insert_task = NullLiteralStatement(
            statements.insert_task_sql, nullable=len(TASK_INSERT_COLUMNS)
        )
        # The guard (id, lease epoch) after the SET values stays bound.
        self._update_task = NullLiteralStatement(
            statements.update_task_sql, nullable=len(MUTABLE_COLUMNS)
        )
        # One connection, used by batches and claims: never two transactions at
        # once, even when a locked database sends one of them to a thread.
        self._in_use = asyncio.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            # Checkpoints run in a thread (sqlite_checkpoint.py); SQLite's own,
            # inline, stays only as a backstop for a log that never gets a quiet moment.
            conn.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_CHECKPOINT_PAGES}")
            self._conn = conn
            self._busy_timeout_ms = None
        return self._conn

    def _use_busy_timeout(self, conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
        # Set only when it changes: a PRAGMA costs about 20 µs, a fifth of a small batch.
        if busy_timeout_ms != self._busy_timeout_ms:
            conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            self._busy_timeout_ms = busy_timeout_ms

    async def apply(self, batch: WriteBatch, stripe: int) -> set[str]:
        """Commit the batch and its roll-up changes (in ``stripe``); returns the fenced ids."""
        async with self._in_use:
            try:
                fenced = self._apply(batch, stripe, busy_timeout_ms=0)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                fenced = await asyncio.to_thread(self._apply, batch, stripe, SQLITE_BUSY_TIMEOUT_MS)
        self._checkpoints.after_commit()
        return fenced

    def _apply(self, batch: WriteBatch, stripe: int, busy_timeout_ms: int) -> set[str]:
        conn = self._connection()
        self._use_busy_timeout(conn, busy_timeout_ms)
        fenced = self._apply_once(conn, batch, stripe, careful=False)
        if fenced is None:
            # Some update did not apply: find out which, under the same lock.
            fenced = self._apply_once(conn, batch, stripe, careful=True)
        assert fenced is not None
        return fenced

    def _apply_once(
        self, conn: sqlite3.Connection, batch: WriteBatch, stripe: int, *, careful: bool
    ) -> set[str] | None:
        """One transaction; None (rolled back) when the optimistic update count fell short."""
        statements = self._statements
        delta = StatsDelta()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if batch.inserts:
                self._insert(conn, batch.inserts, delta)
            fenced: set[str] | None = set()
            if batch.updates:
                fenced = self._apply_updates(conn, batch.updates, delta, careful=careful)
            if fenced is None:
                conn.execute("ROLLBACK")
                return None
            if batch.logs:
                conn.executemany(statements.insert_log_sql, statements.log_rows(batch.logs))
            if delta:
                conn.executemany(statements.stats_upsert_sql, delta.rows(stripe))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return fenced

    def _insert(
        self, conn: sqlite3.Connection, records: list[TaskRecord], delta: StatsDelta
    ) -> None:
        statements = self._statements
        rows = statements.task_rows(records)
        finished = finished_insert_rows(records, rows)
        present: set[str] = set()
        if finished:
            present = {row[0] for row in self._select(conn, "id", list(finished))}
        conn.executemany(*self._insert_task.bind(rows))
        for task_id, (func_name, status, duration_ms) in finished.items():
            if task_id not in present:
                delta.add(func_name, status, duration_ms)

    def _apply_updates(
        self,
        conn: sqlite3.Connection,
        records: list[TaskRecord],
        delta: StatsDelta,
        *,
        careful: bool,
    ) -> set[str] | None:
        statements = self._statements
        if not careful:
            rows = statements.update_rows(records)
            cursor = conn.executemany(*self._update_task.bind(rows))
            if cursor.rowcount != len(rows):
                return None
            count_finishing_updates(records, rows, delta)
            return set()
        ids = [r.task_id for r in records]
        states = {
            row[0]: (row[1], row[2]) for row in self._select(conn, "id, status, lease_epoch", ids)
        }
        applying, fenced = settle_updates(records, states)
        if applying:
            rows = statements.update_rows(applying)
            count_finishing_updates(applying, rows, delta)
            conn.executemany(*self._update_task.bind(rows))
        return fenced

    @staticmethod
    def _select(conn: sqlite3.Connection, columns: str, ids: list[str]) -> list[Any]:
        found: list[Any] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found += conn.execute(
                f"SELECT {columns} FROM taskflow_tasks WHERE id IN ({marks})", chunk
            ).fetchall()
        return found

    async def execute_returning(self, statement: Any) -> list[tuple[Any, ...]]:
        """Run one write statement with RETURNING in its own transaction (claims)."""
        # IN lists become one parameter per value, as the driver expects.
        compiled = statement.compile(
            dialect=self._dialect, compile_kwargs={"render_postcompile": True}
        )
        convert = datetime_converter(self._dialect)
        params = [
            convert(value) if isinstance(value, datetime) else value
            for value in (compiled.params[name] for name in compiled.positiontup or ())
        ]
        async with self._in_use:
            try:
                rows = self._returning(compiled.string, params, busy_timeout_ms=0)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                rows = await asyncio.to_thread(
                    self._returning, compiled.string, params, SQLITE_BUSY_TIMEOUT_MS
                )
        self._checkpoints.after_commit()
        return rows

    def _returning(
        self, sql: str, params: list[Any], busy_timeout_ms: int
    ) -> list[tuple[Any, ...]]:
        conn = self._connection()
        self._use_busy_timeout(conn, busy_timeout_ms)
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
