"""The SQL implementation of ``TaskRepository`` for SQLite, PostgreSQL and MySQL/MariaDB.

One code path for all three; where they differ, ``taskflow.db.dialects`` says
how.  Writes go through a separate "write" view of the engine so that SQLite
opens them with ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from taskflow.db import dialects
from taskflow.db.engine import WRITE_OPTION, connect_args_of
from taskflow.db.revision import check_revision
from taskflow.db.tables import ACTIVE_ONLY, task_logs_table, task_stats_table, tasks_table
from taskflow.exceptions import TaskArgumentError
from taskflow.models import TaskLogEntry, TaskMetrics, TaskRecord, TaskStatus, utcnow
from taskflow.repository.base import (
    BatchOutcome,
    InstanceInfo,
    TaskPage,
    TaskQuery,
    TaskRepository,
    WriteBatch,
)
from taskflow.repository.notices import NoticeSpacing
from taskflow.repository.sql import (
    caller_session,
    errors,
    group_commit,
    idempotency,
    leases,
    limits,
    metrics_query,
    pg_batch,
    reads,
    retention,
    stats,
    wakeups,
)
from taskflow.repository.sql.admin import SqlAdminRecords
from taskflow.repository.sql.batch import BatchStatements
from taskflow.repository.sql.one_off import SqlOneOffs
from taskflow.repository.sql.retries import SqlRetries
from taskflow.repository.sql.schedules import SqlSchedules
from taskflow.repository.sql.sqlite_writer import SqliteInlineWriter

T = tasks_table
logger = logging.getLogger("taskflow.repository")

# At most one cross-instance change notice per this many seconds per instance.
CHANGE_NOTICE_GAP = 0.25


class SqlTaskRepository(SqlSchedules, SqlRetries, SqlOneOffs, SqlAdminRecords, TaskRepository):
    """Tasks in a relational database through one async SQLAlchemy engine.

    The schedule and retry methods are inherited from ``SqlSchedules`` and
    ``SqlRetries`` (next to their SQL in ``.schedules`` and ``.retries``), the
    admin API's records (audit log, sessions, login attempts) from
    ``SqlAdminRecords`` (``.admin``).
    """

    def __init__(self, engine: AsyncEngine, *, stats_stripe: int | None = None) -> None:
        self.engine = engine
        # Which counter rows of the statistics roll-up this repository adds to:
        # given, or derived from the instance id once it registers.
        self._stripe_given = stats_stripe
        self.stats_stripe = (
            stats.stripe_for(uuid.uuid4().hex) if stats_stripe is None else stats_stripe
        )
        self.write_engine = engine.execution_options(**{WRITE_OPTION: True})
        self._statements = BatchStatements(engine.dialect)
        # PostgreSQL: group commits tell other instances' dashboards and waiters,
        # at most every CHANGE_NOTICE_GAP seconds (the last change of a burst late).
        self._notices = NoticeSpacing(CHANGE_NOTICE_GAP, self._send_change_notice)
        self._inline: SqliteInlineWriter | None = None
        # The group commit's own connection, held between batches: taking one
        # from the pool costs a liveness ping, a round trip per commit.
        self._batch_connection: AsyncConnection | None = None
        self._batch_lock = asyncio.Lock()
        # PostgreSQL: most batches are one statement (pg_batch.py), sent on a
        # connection in autocommit, so a commit is one round trip.
        self._one_statement_sql: str | None = None
        self._batch_engine = self.write_engine
        if dialects.is_postgresql(engine.dialect):
            self._one_statement_sql = pg_batch.batch_statement(
                engine.dialect,
                tasks_table.name,
                task_logs_table.name,
                task_stats_table.name,
                ACTIVE_ONLY,
            )
            self._batch_engine = self.write_engine.execution_options(isolation_level="AUTOCOMMIT")
        self._pool_of_one = dialects.is_sqlite(engine.dialect) and engine.url.database in (
            None,
            "",
            ":memory:",
        )
        database = engine.url.database
        if dialects.is_sqlite(engine.dialect) and database not in (None, "", ":memory:"):
            self._inline = SqliteInlineWriter(database, self._statements, engine.dialect)

    @property
    def dialect_name(self) -> str:
        return self.engine.dialect.name

    async def open(self) -> None:
        try:
            async with self.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
                self.max_argument_bytes = await limits.max_argument_bytes(conn)
        except Exception as exc:
            if errors.is_tls_refused(exc):
                raise errors.tls_refused_error(self.engine.url) from exc
            raise

    async def close(self) -> None:
        await self.release()
        await self.engine.dispose()

    async def prepare_schema(self, *, migrate: bool) -> str | None:
        if migrate:
            # Imported here: Alembic loads only where migrations run.
            from taskflow.db.migrate import ensure_schema

            await ensure_schema(self.engine)
        else:
            await check_revision(self.engine)
        return None

    def is_transient(self, exc: BaseException) -> bool:
        return errors.is_transient(exc)

    @property
    def is_local(self) -> bool:
        return dialects.is_sqlite(self.engine.dialect)

    @property
    def prepares_itself(self) -> bool:
        return dialects.is_sqlite(self.engine.dialect)

    @property
    def is_process_private(self) -> bool:
        return self._pool_of_one

    async def add_to_transaction(
        self, session: Any, record: TaskRecord, on_commit: Callable[[], None]
    ) -> str:
        if caller_session.is_async_session(session):
            return await caller_session.add_to_async_session(session, record, on_commit)
        if caller_session.is_session(session):
            return caller_session.add_to_session(session, record, on_commit)
        raise TaskArgumentError(
            f"session must be a SQLAlchemy Session or AsyncSession, got {type(session).__name__}"
        )

    def add_to_transaction_sync(
        self, session: Any, record: TaskRecord, on_commit: Callable[[], None]
    ) -> str:
        return caller_session.add_to_session(session, record, on_commit)

    async def release(self) -> None:
        """Give back the connections this repository holds, leaving the engine open.

        The group commit keeps one connection between batches, and on a
        SQLite file the inline writer keeps its own; ``close()`` does this and
        also disposes the engine.
        """
        if self._inline is not None:
            self._inline.close()
        await self._drop_batch_connection()

    # -- writes -----------------------------------------------------------

    async def apply(self, batch: WriteBatch) -> BatchOutcome:
        # Tasks the batch finishes are rolled up in the same transaction (stats.py).
        if self._inline is not None:
            return BatchOutcome(frozenset(await self._inline.apply(batch, self.stats_stripe)))
        sender = self._notices.sender_now()
        one_statement = self._one_statement_sql is not None and pg_batch.fits_one_statement(batch)
        if (
            self._batch_lock.locked()
            or self._pool_of_one
            or (self._one_statement_sql is not None and not one_statement)
        ):
            # A second writer (tools, tests), an in-memory database whose pool is
            # its one connection, which must go back to the pool, or on PostgreSQL
            # a batch that needs a transaction (the held connection is in
            # autocommit there): a pooled connection.
            async with self.write_engine.connect() as pooled:
                fenced = await group_commit.apply_batch(
                    pooled, self._statements, batch, self.stats_stripe, notify_as=sender
                )
            return BatchOutcome(frozenset(fenced))
        async with self._batch_lock:
            connection = self._batch_connection
            if connection is None:
                connection = self._batch_connection = await self._batch_engine.connect()
            try:
                if self._one_statement_sql is not None:
                    fenced = await group_commit.apply_in_one_statement(
                        connection,
                        self._statements,
                        self._one_statement_sql,
                        batch,
                        self.stats_stripe,
                        notify_as=sender,
                    )
                else:
                    fenced = await group_commit.apply_batch(
                        connection, self._statements, batch, self.stats_stripe, notify_as=sender
                    )
            except BaseException:
                # Whatever failed (the server, the network, a cancellation mid-commit),
                # the next batch starts on a connection known to be sound.
                await self._drop_batch_connection()
                raise
        return BatchOutcome(frozenset(fenced))

    async def _drop_batch_connection(self) -> None:
        connection, self._batch_connection = self._batch_connection, None
        if connection is None:
            return
        try:
            await connection.invalidate()
            await connection.close()
        except Exception as exc:  # already broken: nothing left to release
            logger.debug("closing the group commit's connection failed: %s", exc)

    async def transition(
        self,
        task_id: str,
        *,
        expected_status: Sequence[TaskStatus],
        expected_epoch: int | None,
        status: TaskStatus,
        error: str | None = None,
        bump_epoch: bool = True,
    ) -> bool:
        now = utcnow()
        conditions = [T.c.id == task_id, T.c.status.in_([s.value for s in expected_status])]
        if expected_epoch is not None:
            conditions.append(T.c.lease_epoch == expected_epoch)
        values: dict[str, Any] = {"status": status.value, "updated_at": now}
        if status.is_terminal:
            values["finished_at"] = now
            values["owner"] = None
            values["lease_expires_at"] = None
        if error is not None:
            values["error"] = error
        if bump_epoch:
            values["lease_epoch"] = T.c.lease_epoch + 1
        async with self.write_engine.begin() as conn:
            before = None
            if stats.touches_rollup(status, expected_status):
                before = await stats.lock_row(conn, task_id)
            result = await conn.execute(update(T).where(and_(*conditions)).values(values))
            applied = bool(result.rowcount == 1)
            if applied and before is not None:
                await stats.apply_delta(conn, stats.moved(before, status.value), self.stats_stripe)
        return applied

    # -- reads (SQL in taskflow.repository.sql.reads) ------------------------------

    async def get_task(self, task_id: str, *, with_logs: bool = True) -> TaskRecord | None:
        return await reads.get_task(self.engine, task_id, with_logs)

    async def get_logs(self, task_id: str) -> list[TaskLogEntry]:
        return await reads.get_logs(self.engine, task_id)

    async def list_tasks(self, query: TaskQuery) -> TaskPage:
        return await reads.page(self.engine, query)

    async def metrics(self) -> TaskMetrics:
        # The statistics roll-up plus live counts of active tasks: never a scan
        # of the history (see taskflow.repository.sql.stats for the precision).
        return await metrics_query.read_metrics(self.engine)

    async def rebuild_stats(self) -> int:
        """Recompute the statistics roll-up from the tasks table; returns the tasks counted."""
        return await stats.rebuild_stats(self.write_engine)

    # -- leases and instances (SQL in taskflow.repository.sql.leases) ------------

    async def claim(
        self,
        owner: str,
        *,
        now: datetime,
        lease_until: datetime,
        limit: int,
        take_expired: bool = True,
        start_executor: str | None = None,
        leave_to_start: Collection[str] = (),
    ) -> list[TaskRecord]:
        kind = leases.ClaimKind(take_expired, start_executor, tuple(leave_to_start))
        if self._inline is not None:
            # Inline on SQLite: an idle poll is then one cheap statement, no thread hop.
            statement = leases.claim_ids_statement(
                self.engine.dialect, owner, now, lease_until, limit, kind
            )
            ids = [row[0] for row in await self._inline.execute_returning(statement)]
            return await leases.read_claimed(self.engine, ids)
        return await leases.claim(
            self.write_engine, owner, now=now, lease_until=lease_until, limit=limit, kind=kind
        )

    async def heartbeat(
        self, instance: InstanceInfo, *, lease_until: datetime, held: Collection[str]
    ) -> int:
        return await leases.heartbeat(self.write_engine, instance, lease_until, held)

    async def register_instance(self, instance: InstanceInfo) -> None:
        if self._stripe_given is None:
            self.stats_stripe = stats.stripe_for(instance.instance_id)
        await leases.register_instance(self.write_engine, instance)

    async def deregister_instance(self, instance_id: str, *, now: datetime) -> None:
        await leases.deregister_instance(self.write_engine, instance_id, now)

    async def list_instances(self, *, alive_since: datetime | None = None) -> list[InstanceInfo]:
        return await leases.list_instances(self.engine, alive_since)

    async def insert_with_key(self, record: TaskRecord) -> str:
        return await idempotency.insert_with_key(self.write_engine, record)

    async def listen(self, on_wake: Callable[[], None]) -> Callable[[], Awaitable[None]] | None:
        if not dialects.is_postgresql(self.engine.dialect):
            return None
        listener = wakeups.PostgresListener(
            self.engine.url, on_wake, connect_args=connect_args_of(self.engine)
        )
        await listener.start()
        return listener.stop

    async def listen_changes(
        self, instance_id: str, on_change: Callable[[], None]
    ) -> Callable[[], Awaitable[None]] | None:
        if not dialects.is_postgresql(self.engine.dialect):
            return None
        self._notices.start(instance_id)
        listener = wakeups.PostgresListener(
            self.engine.url,
            on_change,
            channel=wakeups.CHANGES_CHANNEL,
            ignore_sender=instance_id,
            connect_args=connect_args_of(self.engine),
        )
        await listener.start()

        async def stop() -> None:
            await self._notices.stop()
            await listener.stop()

        return stop

    async def _send_change_notice(self, sender: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(wakeups.NOTIFY_CHANGES, {"sender": sender})

    async def announce_work(self) -> None:
        if dialects.is_postgresql(self.engine.dialect):
            async with self.engine.begin() as conn:
                await wakeups.notify(conn)

    async def lost_tasks(self, owner: str, held: dict[str, int]) -> set[str]:
        return await leases.lost_tasks(self.engine, owner, held)

    # -- retention (SQL in taskflow.repository.sql.retention) ----------------------

    async def delete_finished_before(self, cutoff: datetime, *, batch: int = 1000) -> int:
        return await retention.delete_finished_before(
            self.write_engine, cutoff, batch, self.stats_stripe
        )
