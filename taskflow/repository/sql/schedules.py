"""The SQL that decides which instance fires a schedule slot.

Exactly once per slot, on any number of instances, without locks that expire:

1. Compare-and-swap on the schedule row: ``UPDATE taskflow_schedules SET
   next_run_at = :next ... WHERE name = :name AND next_run_at = :slot AND NOT
   paused``.  The row lock serialises racing instances; the one whose UPDATE
   matched (rowcount 1) fired the slot, the others matched nothing.
2. In the same transaction, the task row is inserted with ``(schedule_name,
   scheduled_for)``, which a unique index covers: a second guard that holds
   even if ``next_run_at`` were rewound by hand.  The insert skips duplicates
   instead of raising, so a PostgreSQL transaction is never poisoned.

Either both the advance and the task are committed, or neither.

``SqlSchedules`` gives ``SqlTaskRepository`` its schedule methods on top of
these functions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import false, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from taskflow.db import dialects
from taskflow.db.tables import schedules_table, tasks_table
from taskflow.exceptions import TaskflowError
from taskflow.models import TaskRecord
from taskflow.repository.sql.errors import is_deadlock
from taskflow.repository.sql.mapping import insert_params
from taskflow.schedules import FireOutcome, ScheduleDefinition, ScheduleState

S = schedules_table
T = tasks_table
MAX_ROUNDS = 5
_R = TypeVar("_R")


def state_from_row(row: Mapping[Any, Any]) -> ScheduleState:
    return ScheduleState(
        name=row["name"],
        trigger=row["trigger"],
        every_seconds=row["every_seconds"],
        cron=row["cron"],
        timezone=row["timezone"],
        next_run_at=row["next_run_at"],
        last_run_at=row["last_run_at"],
        last_task_id=row["last_task_id"],
        paused=bool(row["paused"]),
        updated_at=row["updated_at"],
        last_status=row.get("last_status"),
    )


async def in_transaction(
    write_engine: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[_R]]
) -> _R:
    """Run ``work`` in a write transaction, again if InnoDB picked it as a deadlock victim."""
    for attempt in range(MAX_ROUNDS):
        try:
            async with write_engine.begin() as conn:
                return await work(conn)
        except DBAPIError as exc:
            if not is_deadlock(exc) or attempt == MAX_ROUNDS - 1:
                raise
            await asyncio.sleep(0.005 * (attempt + 1))
    raise AssertionError("unreachable")


async def _locked(conn: AsyncConnection, name: str) -> ScheduleState | None:
    stmt = select(S).where(S.c.name == name).with_for_update()
    row = (await conn.execute(stmt)).mappings().first()
    return state_from_row(row) if row is not None else None


def _changed(state: ScheduleState, definition: ScheduleDefinition) -> bool:
    return (
        state.every_seconds != definition.every_seconds
        or state.cron != definition.cron
        or state.timezone != definition.timezone
    )


async def sync(
    write_engine: AsyncEngine,
    definition: ScheduleDefinition,
    *,
    first_run_at: datetime,
    now: datetime,
    run_now_unless_fired_since: datetime | None,
) -> ScheduleState:
    """See ``TaskRepository.sync_schedule``."""

    async def insert(conn: AsyncConnection) -> None:
        await conn.execute(
            dialects.insert_ignoring_duplicates(conn.dialect, S).values(
                name=definition.name,
                trigger=definition.trigger,
                every_seconds=definition.every_seconds,
                cron=definition.cron,
                timezone=definition.timezone,
                next_run_at=first_run_at,
                paused=False,
                updated_at=now,
            )
        )

    async def work(conn: AsyncConnection) -> ScheduleState | None:
        state = await _locked(conn, definition.name)
        if state is None:
            return None
        values: dict[str, Any] = {}
        if _changed(state, definition) or state.next_run_at is None:
            # A new trigger: the old next run belongs to the old one.  Paused stays.
            values.update(
                trigger=definition.trigger,
                every_seconds=definition.every_seconds,
                cron=definition.cron,
                timezone=definition.timezone,
                next_run_at=first_run_at,
            )
        elif state.trigger != definition.trigger:
            values["trigger"] = definition.trigger
        elif _runs_now(state, now, run_now_unless_fired_since):
            values["next_run_at"] = now
        if not values:
            return state
        values["updated_at"] = now
        await conn.execute(update(S).where(S.c.name == definition.name).values(values))
        return await _locked(conn, definition.name)

    for _ in range(MAX_ROUNDS):
        state = await in_transaction(write_engine, work)
        if state is not None:
            return state
        # Missing: insert it in a transaction of its own.  In the same one as the
        # locking read, an INSERT IGNORE meeting another instance's new row takes
        # a shared lock, and two instances upgrading theirs deadlock on InnoDB.
        await in_transaction(write_engine, insert)
    raise TaskflowError(f"schedule {definition.name!r} kept disappearing while being registered")


def _runs_now(state: ScheduleState, now: datetime, fired_since: datetime | None) -> bool:
    """``run_on_startup``: bring the next run forward, unless another instance just fired it."""
    if fired_since is None or state.paused or state.next_run_at is None:
        return False
    if state.next_run_at <= now:
        return False  # due already
    return state.last_run_at is None or state.last_run_at < fired_since


async def fire(
    write_engine: AsyncEngine,
    name: str,
    *,
    slot: datetime,
    next_run_at: datetime,
    record: TaskRecord,
    now: datetime,
) -> FireOutcome:
    """See ``TaskRepository.fire_schedule``."""

    async def work(conn: AsyncConnection) -> FireOutcome:
        won = await conn.execute(
            update(S)
            .where(S.c.name == name, S.c.next_run_at == slot, S.c.paused == false())
            .values(
                next_run_at=next_run_at,
                last_run_at=slot,
                last_task_id=record.task_id,
                updated_at=now,
            )
        )
        if won.rowcount != 1:
            return FireOutcome.LOST
        inserted = await conn.execute(
            dialects.insert_ignoring_duplicates(conn.dialect, T).values(insert_params(record))
        )
        if inserted.rowcount == 1:
            return FireOutcome.FIRED
        # The slot had fired already (next_run_at was moved back by hand): keep
        # the advance, point last_task_id at the task that exists.
        existing = await conn.scalar(
            select(T.c.id).where(T.c.schedule_name == name, T.c.scheduled_for == slot)
        )
        await conn.execute(update(S).where(S.c.name == name).values(last_task_id=existing))
        return FireOutcome.DUPLICATE

    return await in_transaction(write_engine, work)


def _with_last_status() -> Any:
    return select(S, T.c.status.label("last_status")).select_from(
        S.outerjoin(T, T.c.id == S.c.last_task_id)
    )


async def get(engine: AsyncEngine, name: str) -> ScheduleState | None:
    """One schedule with the status of its last task, or None."""
    async with engine.connect() as conn:
        row = (await conn.execute(_with_last_status().where(S.c.name == name))).mappings().first()
    return state_from_row(row) if row is not None else None


async def list_all(engine: AsyncEngine) -> list[ScheduleState]:
    """Every schedule, by name, with the status of its last task (one query)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(_with_last_status().order_by(S.c.name))).mappings().all()
    return [state_from_row(row) for row in rows]


async def set_paused(
    write_engine: AsyncEngine,
    name: str,
    paused: bool,
    *,
    resume_at: datetime | None,
    now: datetime,
) -> bool:
    """Pause or resume ``name``; False when no such schedule exists.

    Resuming moves a next run that passed while paused to ``resume_at``, so
    the runs missed during the pause do not fire.
    """

    async def work(conn: AsyncConnection) -> bool:
        state = await _locked(conn, name)
        if state is None:
            return False
        values: dict[str, Any] = {"paused": paused, "updated_at": now}
        missed = state.next_run_at is None or state.next_run_at < now
        if not paused and resume_at is not None and missed:
            values["next_run_at"] = resume_at
        await conn.execute(update(S).where(S.c.name == name).values(values))
        return True

    return await in_transaction(write_engine, work)


class SqlSchedules:
    """The schedule methods of ``SqlTaskRepository`` (``TaskRepository``'s schedules)."""

    # Set by SqlTaskRepository.__init__: reads go to ``engine``, writes to
    # ``write_engine`` (on SQLite, opened with BEGIN IMMEDIATE).
    engine: AsyncEngine
    write_engine: AsyncEngine

    async def sync_schedule(
        self,
        definition: ScheduleDefinition,
        *,
        first_run_at: datetime,
        now: datetime,
        run_now_unless_fired_since: datetime | None = None,
    ) -> ScheduleState:
        return await sync(
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
        return await fire(
            self.write_engine, name, slot=slot, next_run_at=next_run_at, record=record, now=now
        )

    async def get_schedule(self, name: str) -> ScheduleState | None:
        return await get(self.engine, name)

    async def list_schedules(self) -> list[ScheduleState]:
        return await list_all(self.engine)

    async def set_schedule_paused(
        self, name: str, paused: bool, *, resume_at: datetime | None, now: datetime
    ) -> ScheduleState | None:
        found = await set_paused(self.write_engine, name, paused, resume_at=resume_at, now=now)
        return await get(self.engine, name) if found else None
