"""Scheduled tasks on every SQL backend: exactly once per slot, catch-up, pause, failures.

Several in-process managers share one database the way app instances do;
real uvicorn processes are in test_schedules_processes.py.  Run with ``-s``
to see the one-line summaries of the multi-instance runs.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from taskflow import (
    ScheduleNotFoundError,
    TaskAdmin,
    TaskConfig,
    TaskManager,
    get_task_context,
    task_log,
)
from taskflow.db.engine import create_engine_for
from taskflow.db.tables import schedules_table as S
from taskflow.db.tables import tasks_table as T
from taskflow.models import TaskSource
from taskflow.registry import TaskRegistry
from taskflow.repository.base import TaskQuery
from taskflow.repository.sql import SqlTaskRepository
from taskflow.runtime.records import new_record
from taskflow.runtime.scheduler import PeriodicScheduler
from taskflow.schedules import CronTrigger, FireOutcome, ScheduledEntry, make_trigger
from taskflow.settings import resolve_database_url
from tests.polling import eventually

UTC = timezone.utc
NEW_YORK = ZoneInfo("America/New_York")
RUNS: list[tuple[str, str]] = []  # (schedule name, task id) of every execution


@pytest.fixture(autouse=True)
def _clear_runs() -> None:
    RUNS.clear()


async def record_run() -> None:
    context = get_task_context()
    assert context is not None
    RUNS.append((context.func_name, context.task_id))


@pytest.fixture
async def raw(schema_db_url: str) -> AsyncIterator[AsyncEngine]:
    """A plain engine for reading and rewriting rows behind the managers' backs."""
    engine = create_async_engine(resolve_database_url(schema_db_url).url, poolclass=NullPool)
    try:
        yield engine
    finally:
        await engine.dispose()


async def rows(raw: AsyncEngine, sql: str, **params: Any) -> list[dict[str, Any]]:
    async with raw.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(text(sql), params)]


async def fired_rows(raw: AsyncEngine, name: str) -> list[dict[str, Any]]:
    """The tasks a schedule fired, by slot (``scheduled_for`` read as aware UTC)."""
    stmt = (
        select(T.c.id, T.c.status, T.c.source, T.c.scheduled_for, T.c.attempt)
        .where(T.c.schedule_name == name)
        .order_by(T.c.scheduled_for)
    )
    async with raw.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(stmt)]


async def move_next_run(raw: AsyncEngine, name: str, at: datetime) -> None:
    async with raw.begin() as conn:
        await conn.execute(update(S).where(S.c.name == name).values(next_run_at=at))


def make_manager(url: str, **schedule: Any) -> TaskManager:
    manager = TaskManager(database_url=url, poll_interval=0.05, shutdown_grace=5.0)
    if schedule:
        schedule.setdefault("name", "beat")
        manager.schedule(**schedule)(record_run)
    return manager


def scheduler_of(manager: TaskManager) -> PeriodicScheduler:
    assert manager.scheduler is not None
    return manager.scheduler


# -- exactly once --------------------------------------------------------------------


async def test_three_instances_fire_each_slot_exactly_once(
    schema_db_url: str, raw: AsyncEngine, backend_name: str
) -> None:
    every = 0.1
    managers = [make_manager(schema_db_url, every=every) for _ in range(3)]
    await asyncio.gather(*(m.startup() for m in managers))
    try:
        await asyncio.sleep(1.6)
        await managers[0].pause_schedule("beat")  # every instance stops (the state is shared)
        await eventually(lambda: _all_settled(raw))
        await asyncio.gather(*(m.drain() for m in managers))
    finally:
        for manager in managers:
            await manager.shutdown()

    fired = await fired_rows(raw, "beat")
    slots = [r["scheduled_for"] for r in fired]
    per_slot = Counter(slots)
    executions = Counter(task_id for _name, task_id in RUNS)
    stats = [scheduler_of(m).stats for m in managers]
    missed = sum(round((b - a).total_seconds() / every) - 1 for a, b in itertools.pairwise(slots))
    print(
        f"\n[{backend_name}] 3 instances, every {every}s: {len(slots)} slots fired "
        f"(by instance: {[s.fired for s in stats]}), races lost {sum(s.lost for s in stats)}, "
        f"duplicate slots {sum(n - 1 for n in per_slot.values())}, "
        f"tasks run twice {sum(n - 1 for n in executions.values())}, missed slots {missed}"
    )
    assert len(slots) >= 8
    assert max(per_slot.values()) == 1
    assert sum(s.fired for s in stats) == len(slots)
    assert sum(s.duplicates for s in stats) == 0 and sum(s.errors for s in stats) == 0
    assert sum(s.lost for s in stats) > 0  # they did race for the slots
    assert sorted(executions) == sorted(r["id"] for r in fired)  # every fired task ran...
    assert set(executions.values()) == {1}  # ...once
    assert {r["status"] for r in fired} == {"success"}
    assert {r["source"] for r in fired} == {"scheduled"}
    grid = {round((s - slots[0]).total_seconds() / every, 6) % 1 for s in slots}
    assert grid == {0.0}  # every slot on the schedule's grid: no drift
    # A tick late by more than the interval (a loaded machine) skips ahead, as catch-up
    # does; it never fires a slot twice.  Exactly once is the property; this is latency.
    assert missed <= len(slots) // 2


async def _all_settled(raw: AsyncEngine) -> bool:
    active = await rows(
        raw, "SELECT COUNT(*) AS n FROM taskflow_tasks WHERE status IN ('pending', 'running')"
    )
    return int(active[0]["n"]) == 0


# -- catch-up -----------------------------------------------------------------------


@pytest.mark.parametrize(("catch_up", "expected"), [("once", 1), ("all", 6)])
async def test_after_downtime_a_missed_schedule_fires_once_or_per_slot(
    schema_db_url: str, raw: AsyncEngine, catch_up: str, expected: int
) -> None:
    manager = make_manager(schema_db_url, every=60, catch_up=catch_up)
    await manager.startup()
    await manager.shutdown()
    # Down for a little over five minutes: six slots (-301 s ... -1 s) were missed.
    missed = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=301)
    await move_next_run(raw, "beat", missed)

    manager = make_manager(schema_db_url, every=60, catch_up=catch_up)
    await manager.startup()
    try:
        await eventually(lambda: _count_at_least(raw, expected))
        await asyncio.sleep(0.3)  # nothing more comes
        await manager.drain()
        state = (await manager.list_schedules())[0]
    finally:
        await manager.shutdown()

    fired = await fired_rows(raw, "beat")
    assert len(fired) == expected == len(RUNS)
    slots = [r["scheduled_for"] for r in fired]
    assert slots == [missed + timedelta(minutes=i) for i in range(expected)]
    assert state.next_run_at == missed + timedelta(minutes=6)  # back on the grid, in the future
    assert state.last_run_at == slots[-1]


async def _count_at_least(raw: AsyncEngine, n: int) -> bool:
    return len(await fired_rows(raw, "beat")) >= n


async def test_run_on_startup_fires_once_for_instances_starting_together(
    schema_db_url: str, raw: AsyncEngine
) -> None:
    managers = [make_manager(schema_db_url, every=3600, run_on_startup=True) for _ in range(3)]
    await asyncio.gather(*(m.startup() for m in managers))
    try:
        await eventually(lambda: _settled_row(raw, "beat"))
        await managers[0].shutdown()
        managers[0] = make_manager(schema_db_url, every=3600, run_on_startup=True)
        await managers[0].startup()  # a restart right after: it fired a moment ago
        await asyncio.sleep(0.3)
        state = (await managers[0].list_schedules())[0]
    finally:
        for manager in managers:
            await manager.shutdown()
    fired = await fired_rows(raw, "beat")
    assert len(fired) == 1 == len(RUNS)
    assert state.next_run_at is not None
    assert state.next_run_at > datetime.now(UTC) + timedelta(minutes=59)


# -- definitions, pause and resume ------------------------------------------------------


async def test_startup_keeps_pause_and_adopts_a_changed_trigger(
    schema_db_url: str, raw: AsyncEngine
) -> None:
    manager = make_manager(schema_db_url, every=3600)
    await manager.startup()
    first = (await manager.list_schedules())[0]
    await manager.pause_schedule("beat")
    await manager.shutdown()
    assert first.trigger == "every 3600s" and first.every_seconds == 3600 and not first.paused

    manager = make_manager(schema_db_url, cron="*/5 * * * *", timezone="Europe/Paris")
    await manager.startup()
    try:
        changed = (await manager.list_schedules())[0]
        assert changed.paused  # kept
        assert changed.cron == "*/5 * * * *" and changed.every_seconds is None
        assert changed.trigger == "*/5 * * * * (Europe/Paris)"
        assert changed.timezone == "Europe/Paris"
        assert changed.next_run_at is not None and changed.next_run_at.minute % 5 == 0
        assert changed.next_run_at != first.next_run_at
        resumed = await manager.resume_schedule("beat")
        assert not resumed.paused
    finally:
        await manager.shutdown()


async def test_pause_and_resume_through_the_api_hold_for_every_instance(
    schema_db_url: str, raw: AsyncEngine
) -> None:
    every = 0.1
    serving = make_manager(schema_db_url, every=every)
    other = make_manager(schema_db_url, every=every)
    app = FastAPI()
    TaskAdmin(app, serving)
    await other.startup()
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                await eventually(lambda: _count_at_least(raw, 2))
                listed = (await client.get("/tasks/schedules")).json()
                assert [s["name"] for s in listed] == ["beat"]
                entry = listed[0]
                assert entry["func_name"] == "beat" and entry["trigger"] == "every 0.1s"
                assert entry["every"] == every and entry["cron"] is None
                assert entry["paused"] is False and entry["next_run"] is not None
                assert entry["last_task_id"] is not None and entry["last_run"] is not None
                assert entry["last_status"] in ("pending", "running", "success")

                paused = await client.post("/tasks/schedules/beat/pause")
                assert paused.status_code == 200 and paused.json()["paused"] is True
                await asyncio.sleep(0.05)  # a firing already committed may still run
                before = len(await fired_rows(raw, "beat"))
                await asyncio.sleep(0.5)  # five slots: neither instance fires
                assert len(await fired_rows(raw, "beat")) == before
                listed = (await client.get("/tasks/schedules")).json()
                assert listed[0]["paused"] is True

                resumed = await client.post("/tasks/schedules/beat/resume")
                assert resumed.status_code == 200 and resumed.json()["paused"] is False
                await eventually(lambda: _count_at_least(raw, before + 3))

                for action in ("pause", "resume"):
                    missing = await client.post(f"/tasks/schedules/no_such_schedule/{action}")
                    assert missing.status_code == 404
                    assert "no_such_schedule" in missing.json()["detail"]
                # The task API still answers for task ids; /schedules is not one.
                assert (await client.get("/tasks/not-a-task")).status_code == 404
                with pytest.raises(ScheduleNotFoundError):
                    await other.pause_schedule("no_such_schedule")
    finally:
        await other.shutdown()


# -- scheduled runs are tasks ---------------------------------------------------------


async def test_scheduled_runs_are_normal_tasks_with_retries_and_logs(
    schema_db_url: str, raw: AsyncEngine
) -> None:
    manager = TaskManager(database_url=schema_db_url, poll_interval=0.05)
    attempts: list[int] = []

    @manager.schedule(every=3600, run_on_startup=True, retries=1, name="flaky")
    async def flaky() -> None:
        context = get_task_context()
        assert context is not None
        attempts.append(context.attempt)
        task_log(f"attempt {context.attempt}")
        raise RuntimeError("the report server is down")

    await manager.startup()
    try:
        first = await eventually(lambda: _settled_row(raw, "flaky"))
        # Also an ordinary task: enqueued by hand, it is not a schedule slot.
        manual_id = await manager.enqueue(flaky)
        await manager.drain()
        manual = await manager.get_task(manual_id)
        record = await manager.get_task(first["id"])
    finally:
        await manager.shutdown()
    assert record is not None and manual is not None
    assert record.status.value == "failed" and record.retries_used == 1
    assert record.source == "scheduled" and record.schedule_name == "flaky"
    assert record.scheduled_for is not None
    assert record.error == "RuntimeError: the report server is down"
    assert record.logs[1] == "--- Retry 1 ---"
    assert [record.logs[0].split(" ", 1)[1], record.logs[2].split(" ", 1)[1]] == [
        "attempt 0",
        "attempt 1",
    ]
    assert manual.source == "manual" and manual.schedule_name is None
    assert attempts == [0, 1, 0, 1]


async def _settled_row(raw: AsyncEngine, name: str) -> dict[str, Any] | None:
    found = await fired_rows(raw, name)
    return found[0] if found and found[0]["status"] in ("success", "failed") else None


async def test_a_schedule_added_while_running_starts_firing(
    schema_db_url: str, raw: AsyncEngine
) -> None:
    manager = TaskManager(database_url=schema_db_url, poll_interval=0.05)
    await manager.startup()
    try:
        manager.schedule(every=0.1, name="beat")(record_run)
        await eventually(lambda: _count_at_least(raw, 3))
    finally:
        await manager.shutdown()


# -- failures -------------------------------------------------------------------------


async def test_database_errors_while_firing_do_not_stop_the_scheduler(
    schema_db_url: str, raw: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = make_manager(schema_db_url, every=0.1)
    scheduler = scheduler_of(manager)
    scheduler.retry_interval = 0.05
    repository = manager.repository
    real_fire = repository.fire_schedule
    real_list = repository.list_schedules
    failures = {"fire": 3, "list": 1}

    async def fire(*args: Any, **kwargs: Any) -> Any:
        if failures["fire"]:
            failures["fire"] -= 1
            raise ConnectionError("database unreachable")
        return await real_fire(*args, **kwargs)

    async def list_schedules() -> Any:
        if failures["list"]:
            failures["list"] -= 1
            raise ConnectionError("database unreachable")
        return await real_list()

    monkeypatch.setattr(repository, "fire_schedule", fire)
    monkeypatch.setattr(repository, "list_schedules", list_schedules)
    await manager.startup()
    try:
        await eventually(lambda: _count_at_least(raw, 3))
    finally:
        await manager.shutdown()
    assert scheduler.stats.errors >= 4
    assert scheduler.stats.fired >= 3
    assert failures == {"fire": 0, "list": 0}


async def test_startup_survives_an_unreachable_database_for_the_schedules(
    schema_db_url: str, raw: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = make_manager(schema_db_url, every=0.1)
    scheduler_of(manager).retry_interval = 0.05
    real_sync = manager.repository.sync_schedule
    calls = {"n": 0}

    async def sync_schedule(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("database unreachable")
        return await real_sync(*args, **kwargs)

    monkeypatch.setattr(manager.repository, "sync_schedule", sync_schedule)
    await manager.startup()  # does not raise
    try:
        await eventually(lambda: _count_at_least(raw, 2))
    finally:
        await manager.shutdown()


# -- a controllable clock across DST -----------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "start", "expected_local"),
    [
        # Spring forward: 02:30 does not exist on 10 March; it fires at 03:00 EDT.
        ("30 2 * * *", datetime(2024, 3, 9, 12, tzinfo=UTC), ["03:00", "02:30", "02:30"]),
        # Fall back: 01:30 exists twice on 3 November; it fires once.
        ("30 1 * * *", datetime(2024, 11, 2, 12, tzinfo=UTC), ["01:30", "01:30", "01:30"]),
    ],
)
async def test_cron_across_dst_with_a_fake_clock(
    schema_db_url: str,
    raw: AsyncEngine,
    expression: str,
    start: datetime,
    expected_local: list[str],
) -> None:
    clock = {"now": start}
    repository = SqlTaskRepository(create_engine_for(resolve_database_url(schema_db_url)))
    target = TaskRegistry().register(record_run, TaskConfig(name="nightly"))
    scheduler = PeriodicScheduler(repository, clock=lambda: clock["now"])
    trigger = CronTrigger(expression, "America/New_York")
    scheduler.add(ScheduledEntry(target, trigger))
    try:
        await scheduler.sync()
        while clock["now"] < start + timedelta(days=3):
            await scheduler.tick()
            clock["now"] += timedelta(minutes=10)
    finally:
        await repository.close()
    fired = await fired_rows(raw, "nightly")
    local = [r["scheduled_for"].astimezone(NEW_YORK) for r in fired]
    assert [t.strftime("%H:%M") for t in local] == expected_local
    assert len({t.date() for t in local}) == 3  # one firing per local day
    assert scheduler.stats.fired == 3 and scheduler.stats.lost == 0


# -- the repository's guards ------------------------------------------------------------


def _slot_record(target: Any, slot: datetime) -> Any:
    record = new_record(
        target, (), {}, owner=None, lease_seconds=0, cipher=None, source=TaskSource.SCHEDULED
    )
    record.schedule_name = target.name
    record.scheduled_for = slot
    return record


async def test_racing_fires_of_one_slot_have_one_winner(schema_db_url: str) -> None:
    """Eight connection pools (eight instances) fire the same slot at the same time."""
    target = TaskRegistry().register(record_run, TaskConfig(name="beat"))
    entry = ScheduledEntry(target, make_trigger(every=60, cron=None))
    now = datetime.now(UTC)
    slot = now - timedelta(seconds=1)
    repositories = [
        SqlTaskRepository(create_engine_for(resolve_database_url(schema_db_url))) for _ in range(8)
    ]
    try:
        await repositories[0].sync_schedule(entry.definition, first_run_at=slot, now=now)
        outcomes = await asyncio.gather(
            *(
                repository.fire_schedule(
                    "beat",
                    slot=slot,
                    next_run_at=slot + timedelta(minutes=1),
                    record=_slot_record(target, slot),
                    now=now,
                )
                for repository in repositories
            )
        )
        state = await repositories[0].get_schedule("beat")
        tasks = await repositories[0].list_tasks(TaskQuery(source="scheduled"))
    finally:
        for repository in repositories:
            await repository.close()
    assert Counter(outcomes) == Counter({FireOutcome.FIRED: 1, FireOutcome.LOST: 7})
    assert len(tasks.items) == 1
    assert state is not None and state.last_task_id == tasks.items[0].task_id
    assert state.next_run_at == slot + timedelta(minutes=1) and state.last_run_at == slot


async def test_a_rewound_slot_cannot_fire_a_second_task(schema_db_url: str) -> None:
    """The unique (schedule_name, scheduled_for) index is the second guard."""
    target = TaskRegistry().register(record_run, TaskConfig(name="beat"))
    entry = ScheduledEntry(target, make_trigger(every=60, cron=None))
    now = datetime.now(UTC)
    slot = now - timedelta(seconds=1)
    repository = SqlTaskRepository(create_engine_for(resolve_database_url(schema_db_url)))
    try:
        await repository.sync_schedule(entry.definition, first_run_at=slot, now=now)
        first = _slot_record(target, slot)
        fire = {"slot": slot, "next_run_at": slot + timedelta(minutes=1), "now": now}
        assert await repository.fire_schedule("beat", record=first, **fire) is FireOutcome.FIRED
        # Someone moves next_run_at back to the slot that fired.
        async with repository.engine.begin() as conn:
            await conn.execute(update(S).where(S.c.name == "beat").values(next_run_at=slot))
        again = _slot_record(target, slot)
        outcome = await repository.fire_schedule("beat", record=again, **fire)
        state = await repository.get_schedule("beat")
        tasks = await repository.list_tasks(TaskQuery(source="scheduled"))
        paused = await repository.set_schedule_paused("beat", True, resume_at=None, now=now)
        missing = await repository.set_schedule_paused("nope", True, resume_at=None, now=now)
    finally:
        await repository.close()
    assert outcome is FireOutcome.DUPLICATE
    assert [t.task_id for t in tasks.items] == [first.task_id]
    assert state is not None and state.last_task_id == first.task_id  # not the phantom id
    assert state.next_run_at == slot + timedelta(minutes=1)
    assert paused is not None and paused.paused and missing is None
