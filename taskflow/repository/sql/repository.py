"""The SQL implementation of ``TaskRepository`` for SQLite, PostgreSQL and MySQL/MariaDB.

One code path for all three; where they differ, ``taskflow.db.dialects`` says
how.  Writes go through a separate "write" view of the engine so that SQLite
opens them with ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Select,
    and_,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from taskflow.db import dialects
from taskflow.db.engine import WRITE_OPTION, connect_args_of
from taskflow.db.revision import revision_problem
from taskflow.db.tables import ACTIVE_ONLY, task_logs_table, task_stats_table, tasks_table
from taskflow.exceptions import TaskArgumentError
from taskflow.models import (
    AuditEntry,
    TaskLogEntry,
    TaskMetrics,
    TaskRecord,
    TaskStatus,
    utcnow,
)
from taskflow.repository.base import (
    AdminSession,
    BatchOutcome,
    InstanceInfo,
    InstanceStatus,
    LoginAttempts,
    ReplayPage,
    RetryCopy,
    RetrySource,
    TaskPage,
    TaskQuery,
    TaskRepository,
    WriteBatch,
)
from taskflow.repository.cursor import decode_cursor, encode_cursor
from taskflow.repository.sql import (
    admin_sessions,
    audit,
    caller_session,
    errors,
    group_commit,
    idempotency,
    instances,
    leases,
    limits,
    login_attempts,
    metrics_query,
    pg_batch,
    retention,
    retries,
    schedules,
    stats,
    wakeups,
)
from taskflow.repository.sql.batch import BatchStatements
from taskflow.repository.sql.mapping import log_from_row, record_from_row, render_logs
from taskflow.repository.sql.sqlite_writer import SqliteInlineWriter
from taskflow.schedules import FireOutcome, ScheduleDefinition, ScheduleState

T = tasks_table
L = task_logs_table
logger = logging.getLogger("taskflow.repository")

# Columns a page of the list needs: no payload, no stack trace.
LIST_COLUMNS = [c for c in T.c if c.name not in ("payload", "stacktrace")]


# At most one cross-instance change notice per this many seconds per instance.
CHANGE_NOTICE_GAP = 0.25


class SqlTaskRepository(TaskRepository):
    """Tasks in a relational database through one async SQLAlchemy engine."""

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
        # PostgreSQL: group commits tell other instances' dashboards, at most
        # every CHANGE_NOTICE_GAP seconds (their polling covers the rest).
        self._change_sender: str | None = None
        self._last_change_notice = 0.0
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
                tasks_table.name, task_logs_table.name, task_stats_table.name, ACTIVE_ONLY
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
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
            self.max_argument_bytes = await limits.max_argument_bytes(conn)

    async def close(self) -> None:
        await self.release()
        await self.engine.dispose()

    async def prepare_schema(self, *, migrate: bool) -> str | None:
        if migrate:
            # Imported here: Alembic loads only where migrations run.
            from taskflow.db.migrate import ensure_schema

            await ensure_schema(self.engine)
            return None
        return await revision_problem(self.engine)

    def is_transient(self, exc: BaseException) -> bool:
        return errors.is_transient(exc)

    @property
    def is_local(self) -> bool:
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
        sender = self._change_sender
        if sender is not None:
            now = time.monotonic()
            if now - self._last_change_notice >= CHANGE_NOTICE_GAP:
                self._last_change_notice = now
            else:
                sender = None
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

    # -- reads ------------------------------------------------------------

    async def get_task(self, task_id: str, *, with_logs: bool = True) -> TaskRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(T).where(T.c.id == task_id))).mappings().first()
            if row is None:
                return None
            record = record_from_row(row)
            if with_logs:
                entries = await self._logs(conn, task_id)
                record.logs = render_logs(entries, record.retries_used)
        return record

    async def get_logs(self, task_id: str) -> list[TaskLogEntry]:
        async with self.engine.connect() as conn:
            return await self._logs(conn, task_id)

    async def _logs(self, conn: AsyncConnection, task_id: str) -> list[TaskLogEntry]:
        rows = await conn.execute(select(L).where(L.c.task_id == task_id).order_by(L.c.id))
        return [log_from_row(r) for r in rows.mappings()]

    async def list_tasks(self, query: TaskQuery) -> TaskPage:
        stmt = self._filtered(select(*LIST_COLUMNS), query)
        if query.cursor:
            created, last_id = decode_cursor(query.cursor)
            stmt = stmt.where(
                or_(T.c.created_at < created, and_(T.c.created_at == created, T.c.id < last_id))
            )
        stmt = stmt.order_by(T.c.created_at.desc(), T.c.id.desc()).limit(query.limit + 1)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        items = [record_from_row(r) for r in rows[: query.limit]]
        next_cursor = None
        if len(rows) > query.limit and items:
            last = items[-1]
            next_cursor = encode_cursor(last.created_at, last.task_id)
        return TaskPage(items=items, next_cursor=next_cursor)

    @staticmethod
    def _filtered(stmt: Select[Any], query: TaskQuery) -> Select[Any]:
        if query.status:
            stmt = stmt.where(T.c.status.in_([TaskStatus(s).value for s in query.status]))
        if query.func_name:
            stmt = stmt.where(T.c.func_name == query.func_name)
        if query.source:
            stmt = stmt.where(T.c.source == query.source)
        if query.created_since:
            stmt = stmt.where(T.c.created_at >= query.created_since)
        if query.created_until:
            stmt = stmt.where(T.c.created_at < query.created_until)
        if query.search:
            # Case-insensitive on every dialect; % and _ are searched for, not wildcards.
            term = query.search
            stmt = stmt.where(
                or_(
                    T.c.id.icontains(term, autoescape=True),
                    T.c.func_name.icontains(term, autoescape=True),
                )
            )
        return stmt

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
        self._change_sender = instance_id
        listener = wakeups.PostgresListener(
            self.engine.url,
            on_change,
            channel=wakeups.CHANGES_CHANNEL,
            ignore_sender=instance_id,
            connect_args=connect_args_of(self.engine),
        )
        await listener.start()

        async def stop() -> None:
            self._change_sender = None
            await listener.stop()

        return stop

    async def announce_work(self) -> None:
        if dialects.is_postgresql(self.engine.dialect):
            async with self.engine.begin() as conn:
                await wakeups.notify(conn)

    async def lost_tasks(self, owner: str, held: dict[str, int]) -> set[str]:
        return await leases.lost_tasks(self.engine, owner, held)

    # -- schedules (SQL in taskflow.repository.sql.schedules) ----------------------

    async def sync_schedule(
        self,
        definition: ScheduleDefinition,
        *,
        first_run_at: datetime,
        now: datetime,
        run_now_unless_fired_since: datetime | None = None,
    ) -> ScheduleState:
        return await schedules.sync(
            self.write_engine,
            definition,
            first_run_at=first_run_at,
            now=now,
            run_now_unless_fired_since=run_now_unless_fired_since,
        )

    async def fire_schedule(
        self,
        name: str,
        *,
        slot: datetime,
        next_run_at: datetime,
        record: TaskRecord,
        now: datetime,
    ) -> FireOutcome:
        return await schedules.fire(
            self.write_engine, name, slot=slot, next_run_at=next_run_at, record=record, now=now
        )

    async def get_schedule(self, name: str) -> ScheduleState | None:
        return await schedules.get(self.engine, name)

    async def list_schedules(self) -> list[ScheduleState]:
        return await schedules.list_all(self.engine)

    async def set_schedule_paused(
        self, name: str, paused: bool, *, resume_at: datetime | None, now: datetime
    ) -> ScheduleState | None:
        found = await schedules.set_paused(
            self.write_engine, name, paused, resume_at=resume_at, now=now
        )
        return await schedules.get(self.engine, name) if found else None

    async def delete_finished_before(self, cutoff: datetime, *, batch: int = 1000) -> int:
        return await retention.delete_finished_before(
            self.write_engine, cutoff, batch, self.stats_stripe
        )

    # -- retries, audit log, live instances (SQL in .retries, .audit, .instances)

    async def retry_sources(self, task_ids: Sequence[str]) -> list[RetrySource]:
        return await retries.sources(self.engine, task_ids)

    async def replay_candidates(self, page: ReplayPage) -> list[RetrySource]:
        return await retries.candidates(self.engine, page)

    async def retried_ids(self, task_ids: Sequence[str]) -> set[str]:
        return await retries.retried(self.engine, task_ids)

    async def retry_origins(self, task_ids: Sequence[str]) -> dict[str, str | None]:
        return await retries.origins(self.engine, task_ids)

    async def insert_retries(
        self, copies: Sequence[RetryCopy], *, now: datetime
    ) -> list[RetryCopy]:
        return await retries.insert_copies(self.write_engine, copies, now)

    async def insert_audit(
        self,
        action: str,
        *,
        actor: str,
        task_id: str | None,
        detail: dict[str, Any] | None,
        now: datetime,
    ) -> AuditEntry:
        return await audit.append(
            self.write_engine, action, actor=actor, task_id=task_id, detail=detail, now=now
        )

    async def list_audit(self, *, limit: int, before: int | None = None) -> list[AuditEntry]:
        return await audit.page(self.engine, limit, before)

    async def list_live_instances(self, *, alive_since: datetime) -> list[InstanceStatus]:
        return await instances.live(self.engine, alive_since)

    # -- admin sessions (SQL in taskflow.repository.sql.admin_sessions) ------------

    async def create_admin_session(self, session: AdminSession) -> None:
        await admin_sessions.create(self.write_engine, session)

    async def get_admin_session(self, session_id: str, *, now: datetime) -> AdminSession | None:
        return await admin_sessions.get_valid(self.engine, session_id, now)

    async def revoke_admin_session(self, session_id: str, *, now: datetime) -> bool:
        return await admin_sessions.revoke(self.write_engine, session_id, now)

    async def purge_admin_sessions(self, *, now: datetime) -> int:
        return await admin_sessions.purge_expired(self.write_engine, now)

    # -- login throttle (SQL in taskflow.repository.sql.login_attempts) ------------

    async def begin_login_attempt(
        self, client: str, user: str, *, now: datetime, since: datetime
    ) -> LoginAttempts:
        return await login_attempts.begin(self.write_engine, client, user, now, since)

    async def forget_login_attempt(self, attempt_id: int) -> None:
        await login_attempts.forget(self.write_engine, attempt_id)

    async def clear_login_attempts(self, client: str, user: str) -> None:
        await login_attempts.clear(self.write_engine, client, user)

    async def purge_login_attempts(self, *, before: datetime) -> int:
        return await login_attempts.purge(self.write_engine, before)
