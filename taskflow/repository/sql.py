"""The SQL implementation of ``TaskRepository`` for SQLite, PostgreSQL and MySQL/MariaDB.

One code path for all three; where they differ, ``taskflow.db.dialects`` says
how.  Writes go through a separate "write" view of the engine so that SQLite
opens them with ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Select,
    and_,
    case,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from taskflow.db import dialects
from taskflow.db.batch import BatchStatements
from taskflow.db.engine import WRITE_OPTION
from taskflow.db.mapping import log_from_row, record_from_row, render_logs
from taskflow.db.sqlite_writer import SqliteInlineWriter
from taskflow.db.tables import task_logs_table, tasks_table
from taskflow.models import (
    FunctionMetrics,
    TaskLogEntry,
    TaskMetrics,
    TaskRecord,
    TaskStatus,
    utcnow,
)
from taskflow.repository import idempotency, leases, retention, schedules, wakeups
from taskflow.repository.base import (
    BatchOutcome,
    InstanceInfo,
    TaskPage,
    TaskQuery,
    TaskRepository,
    WriteBatch,
)
from taskflow.repository.cursor import decode_cursor, encode_cursor
from taskflow.schedules import FireOutcome, ScheduleDefinition, ScheduleState

T = tasks_table
L = task_logs_table

# Columns a page of the list needs: no payload, no stack trace.
LIST_COLUMNS = [c for c in T.c if c.name not in ("payload", "stacktrace")]
FINISHED = (TaskStatus.SUCCESS.value, TaskStatus.FAILED.value)


class SqlTaskRepository(TaskRepository):
    """Tasks in a relational database through one async SQLAlchemy engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.write_engine = engine.execution_options(**{WRITE_OPTION: True})
        self._statements = BatchStatements(engine.dialect)
        self._inline: SqliteInlineWriter | None = None
        database = engine.url.database
        if dialects.is_sqlite(engine.dialect) and database not in (None, "", ":memory:"):
            self._inline = SqliteInlineWriter(database, self._statements, engine.dialect)

    @property
    def dialect_name(self) -> str:
        return self.engine.dialect.name

    async def open(self) -> None:
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def close(self) -> None:
        if self._inline is not None:
            self._inline.close()
        await self.engine.dispose()

    # -- writes -----------------------------------------------------------

    async def apply(self, batch: WriteBatch) -> BatchOutcome:
        if self._inline is not None:
            return BatchOutcome(frozenset(await self._inline.apply(batch)))
        fenced: set[str] = set()
        statements = self._statements
        async with self.write_engine.begin() as conn:
            if batch.inserts:
                rows = statements.task_rows(batch.inserts)
                await conn.exec_driver_sql(statements.insert_task_sql, rows)
            if batch.updates:
                fenced = await self._apply_updates(conn, batch.updates)
            if batch.logs:
                rows = statements.log_rows(batch.logs)
                await conn.exec_driver_sql(statements.insert_log_sql, rows)
        return BatchOutcome(frozenset(fenced))

    async def _apply_updates(self, conn: AsyncConnection, records: list[TaskRecord]) -> set[str]:
        # A fixed lock order keeps two instances' batches from deadlocking.
        ordered = sorted(records, key=lambda r: r.task_id)
        rows = self._statements.update_rows(ordered)
        result = await conn.exec_driver_sql(self._statements.update_task_sql, rows)
        if dialects.reports_executemany_rowcount(conn.dialect) and result.rowcount == len(rows):
            return set()
        # Read back inside the same transaction: our updated rows are locked, so
        # an epoch that differs from ours means our guarded update did not apply.
        expected = {r.task_id: r.lease_epoch for r in ordered}
        found = await conn.execute(
            select(T.c.id, T.c.lease_epoch).where(T.c.id.in_(list(expected)))
        )
        seen = {row.id: row.lease_epoch for row in found}
        return {tid for tid, epoch in expected.items() if seen.get(tid) != epoch}

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
            result = await conn.execute(update(T).where(and_(*conditions)).values(values))
        return bool(result.rowcount == 1)

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
        async with self.engine.connect() as conn:
            counts = {
                row.status: int(row.n)
                for row in await conn.execute(
                    select(T.c.status, func.count().label("n")).group_by(T.c.status)
                )
            }
            finished = T.c.status.in_(FINISHED) & T.c.duration_ms.is_not(None)
            avg_ms = (
                await conn.execute(select(func.avg(T.c.duration_ms)).where(finished))
            ).scalar()
            by_function = await self._function_metrics(conn)
        avg = float(avg_ms) / 1000.0 if avg_ms is not None else None
        return TaskMetrics(counts=counts, avg_duration_seconds=avg, by_function=by_function)

    async def _function_metrics(self, conn: AsyncConnection) -> list[FunctionMetrics]:
        def count_of(status: TaskStatus) -> Any:
            return func.sum(case((T.c.status == status.value, 1), else_=0))

        finished_ms = case((T.c.status.in_(FINISHED), T.c.duration_ms), else_=None)
        stats = await conn.execute(
            select(
                T.c.func_name,
                func.count().label("total"),
                count_of(TaskStatus.SUCCESS).label("success"),
                count_of(TaskStatus.FAILED).label("failed"),
                count_of(TaskStatus.RUNNING).label("running"),
                func.avg(finished_ms).label("avg_ms"),
                func.min(finished_ms).label("min_ms"),
                func.max(finished_ms).label("max_ms"),
            )
            .group_by(T.c.func_name)
            .order_by(T.c.func_name)
        )
        p95 = await self._p95_by_function(conn)
        result = []
        for row in stats:
            result.append(
                FunctionMetrics(
                    func_name=row.func_name,
                    total=int(row.total),
                    success=int(row.success or 0),
                    failed=int(row.failed or 0),
                    running=int(row.running or 0),
                    avg_duration=_seconds(row.avg_ms),
                    min_duration=_seconds(row.min_ms),
                    max_duration=_seconds(row.max_ms),
                    p95_duration=p95.get(row.func_name),
                )
            )
        return result

    async def _p95_by_function(self, conn: AsyncConnection) -> dict[str, float]:
        # Nearest-rank percentile with window functions, which every supported
        # dialect has (SQLite 3.25+, MySQL 8, MariaDB 10.2, PostgreSQL).
        ranked = (
            select(
                T.c.func_name,
                T.c.duration_ms,
                func.row_number()
                .over(partition_by=T.c.func_name, order_by=T.c.duration_ms)
                .label("rn"),
                func.count().over(partition_by=T.c.func_name).label("cnt"),
            )
            .where(T.c.status.in_(FINISHED), T.c.duration_ms.is_not(None))
            .subquery()
        )
        rn, cnt = ranked.c.rn, ranked.c.cnt
        stmt = select(ranked.c.func_name, ranked.c.duration_ms).where(
            rn * 100 >= cnt * literal_column("95"), (rn - 1) * 100 < cnt * literal_column("95")
        )
        rows = await conn.execute(stmt)
        return {row.func_name: float(row.duration_ms) / 1000.0 for row in rows}


    # -- leases and instances (SQL in taskflow.repository.leases) ------------

    async def claim(
        self, owner: str, *, now: datetime, lease_until: datetime, limit: int
    ) -> list[TaskRecord]:
        if self._inline is not None:
            # Inline on SQLite: an idle poll is then one cheap statement, no thread hop.
            statement = leases.claim_ids_statement(
                self.engine.dialect, owner, now, lease_until, limit
            )
            ids = [row[0] for row in await self._inline.execute_returning(statement)]
            return await leases.read_claimed(self.engine, ids)
        return await leases.claim(
            self.write_engine, owner, now=now, lease_until=lease_until, limit=limit
        )

    async def heartbeat(self, instance: InstanceInfo, *, lease_until: datetime) -> int:
        return await leases.heartbeat(self.write_engine, instance, lease_until)

    async def register_instance(self, instance: InstanceInfo) -> None:
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
        listener = wakeups.PostgresListener(self.engine.url, on_wake)
        await listener.start()
        return listener.stop

    async def announce_work(self) -> None:
        if dialects.is_postgresql(self.engine.dialect):
            async with self.engine.begin() as conn:
                await wakeups.notify(conn)

    async def lost_tasks(self, owner: str, held: dict[str, int]) -> set[str]:
        return await leases.lost_tasks(self.engine, owner, held)

    # -- schedules (SQL in taskflow.repository.schedules) ----------------------

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
        return await retention.delete_finished_before(self.write_engine, cutoff, batch)


def _seconds(ms: Any) -> float | None:
    return float(ms) / 1000.0 if ms is not None else None
