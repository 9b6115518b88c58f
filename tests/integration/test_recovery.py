"""Crash recovery and fencing, in-process, on every SQL backend.

A "dead instance" is simulated the way it looks in the database: rows owned
by an instance id whose lease has expired.  Real processes killed with SIGKILL
are in test_crash_drill.py.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from taskflow import TaskManager
from taskflow.db.tables import tasks_table as T
from taskflow.ids import new_task_id
from taskflow.models import TaskRecord, TaskStatus, utcnow
from taskflow.repository.base import WriteBatch

RUNS: list[str] = []


async def record_run(tag: str) -> str:
    RUNS.append(tag)
    return tag


async def slow(tag: str, seconds: float) -> str:
    RUNS.append(f"start:{tag}")
    await asyncio.sleep(seconds)
    RUNS.append(f"end:{tag}")
    return tag


def dead_row(func_name: str, status: TaskStatus, *, args: list[Any]) -> TaskRecord:
    past = utcnow() - timedelta(minutes=5)
    return TaskRecord(
        task_id=new_task_id(),
        func_name=func_name,
        status=status,
        args=tuple(args),
        created_at=past,
        start_time=past if status is TaskStatus.RUNNING else None,
        run_at=past,
        updated_at=past,
        owner="dead-host:1:deadbeef",
        lease_epoch=1,
        lease_expires_at=past + timedelta(seconds=20),
        executor="async",
    )


def make_manager(url: str, **options: Any) -> TaskManager:
    manager = TaskManager(database_url=url, poll_interval=0.05, **options)
    manager.task(name="record_run")(record_run)
    manager.task(name="record_run_requeued", requeue_on_interrupt=True)(record_run)
    manager.task(name="slow")(slow)
    return manager


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def statuses(manager: TaskManager, ids: list[str]) -> dict[str, TaskRecord]:
    found = {}
    for task_id in ids:
        record = await manager.get_task(task_id)
        assert record is not None
        found[task_id] = record
    return found


@pytest.fixture(autouse=True)
def _clear_runs() -> None:
    RUNS.clear()


async def test_dead_instance_tasks_are_recovered(schema_db_url: str) -> None:
    # Running rows are recovered once this instance has reached the database
    # for a whole lease: a short one keeps the test short.
    manager = make_manager(schema_db_url, lease_seconds=1.0)
    await manager.startup()
    try:
        pending = dead_row("record_run", TaskStatus.PENDING, args=["pending"])
        running = dead_row("record_run", TaskStatus.RUNNING, args=["running"])
        requeued = dead_row("record_run_requeued", TaskStatus.RUNNING, args=["requeued"])
        unknown = dead_row("no_such_function", TaskStatus.PENDING, args=[])
        rows = [pending, running, requeued, unknown]
        await manager.repository.apply(WriteBatch(inserts=rows))
        ids = [r.task_id for r in rows]

        async def all_settled() -> bool:
            found = await statuses(manager, ids)
            return all(r.status.is_terminal for r in found.values())

        await wait_until(all_settled)
        found = await statuses(manager, ids)
    finally:
        await manager.shutdown()

    assert found[pending.task_id].status is TaskStatus.SUCCESS
    assert found[pending.task_id].result == "pending"
    assert found[running.task_id].status is TaskStatus.INTERRUPTED
    assert "stopped responding" in (found[running.task_id].error or "")
    assert found[requeued.task_id].status is TaskStatus.SUCCESS
    assert found[requeued.task_id].retries_used == 1  # the dead attempt counted
    assert found[unknown.task_id].status is TaskStatus.FAILED
    assert "no_such_function" in (found[unknown.task_id].error or "")
    assert sorted(RUNS) == ["pending", "requeued"]  # the interrupted one did not run again
    for record in found.values():
        assert record.owner is None and record.lease_expires_at is None


async def test_live_leases_are_not_taken(schema_db_url: str) -> None:
    holder = make_manager(schema_db_url)
    other = make_manager(schema_db_url)
    await holder.startup()
    await other.startup()
    try:
        task_id = await holder.enqueue(slow, "held", 0.5)
        await asyncio.sleep(0.2)
        assert await other.runtime.dispatcher.claim_once() == 0  # type: ignore[union-attr]
        await holder.drain()
        record = await holder.get_task(task_id)
    finally:
        await holder.shutdown()
        await other.shutdown()
    assert record is not None and record.status is TaskStatus.SUCCESS
    assert RUNS == ["start:held", "end:held"]


async def test_zombie_cannot_overwrite_the_attempt_that_replaced_it(
    schema_db_url: str, engine: Any
) -> None:
    zombie = make_manager(schema_db_url, lease_seconds=20.0)
    rescuer = make_manager(schema_db_url, lease_seconds=1.0)
    await zombie.startup()
    await rescuer.startup()
    try:
        task_id = await zombie.enqueue(slow, "job", 2.5)
        await asyncio.sleep(0.2)  # the zombie is mid-attempt
        # The zombie freezes (a GC pause, a stopped VM): no more heartbeats, and
        # its lease runs out.  The rescuer takes the task over once it has
        # reached the database for a whole lease of its own.
        await zombie.runtime.dispatcher.stop()  # type: ignore[union-attr]
        async with engine.begin() as conn:
            await conn.execute(
                update(T)
                .where(T.c.id == task_id)
                .values(lease_expires_at=utcnow() - timedelta(seconds=1))
            )

        async def rescued() -> bool:
            record = await rescuer.get_task(task_id)
            return record is not None and record.status.is_terminal

        await wait_until(rescued)
        await zombie.drain()
        await rescuer.drain()
        async with engine.connect() as conn:
            row = (await conn.execute(select(T).where(T.c.id == task_id))).mappings().one()
    finally:
        await zombie.shutdown()
        await rescuer.shutdown()
    # Without requeue_on_interrupt the rescuer records the dead attempt as
    # interrupted; the zombie, fenced by lease_epoch, writes nothing after it.
    assert row["status"] == "interrupted"
    assert row["lease_epoch"] == 2
    assert row["result"] is None and row["finished_at"] is not None
    assert RUNS == ["start:job", "end:job"]  # the zombie finished its attempt...
    assert (
        task_id not in zombie.local_tasks.held
    )  # ...but its success was refused (fenced), not written


async def test_concurrent_claims_never_share_a_row(schema_db_url: str) -> None:
    managers = [make_manager(schema_db_url) for _ in range(3)]
    for manager in managers:
        await manager.startup()
        await manager.runtime.dispatcher.stop()  # type: ignore[union-attr]  # claim by hand below
    try:
        rows = [dead_row("record_run", TaskStatus.PENDING, args=[str(i)]) for i in range(150)]
        await managers[0].repository.apply(WriteBatch(inserts=rows))
        claimed: list[str] = []
        for _round in range(20):  # SKIP LOCKED may pass over rows another claim holds
            now = utcnow()
            lease_until = now + timedelta(seconds=30)
            results = await asyncio.gather(
                *(
                    m.repository.claim(m.instance_id, now=now, lease_until=lease_until, limit=40)
                    for m in managers
                    for _ in range(2)
                )
            )
            claimed += [r.task_id for batch in results for r in batch]
            if len(set(claimed)) >= 150:
                break
    finally:
        for manager in managers:
            manager.local_tasks.held.clear()
            await manager.shutdown()
    assert len(claimed) == len(set(claimed)) == 150


async def test_after_an_outage_every_instance_saw_live_tasks_are_not_recovered(
    schema_db_url: str,
) -> None:
    """Expired leases of a live instance that could not renew them are not taken over.

    After an outage the leases of every instance have run out; the instance
    that reconnects first must not mark the others' running tasks
    interrupted: they renew within a heartbeat of the database's return.
    """
    holder = make_manager(schema_db_url, lease_seconds=1.0)
    await holder.startup()
    other = make_manager(schema_db_url, lease_seconds=1.0)
    try:
        task_id = await holder.enqueue(slow, "live", 2.0)
        await wait_until(lambda: _async(lambda: "start:live" in RUNS))
        # What an outage leaves: the lease ran out while no renewal could reach it.
        await _expire_lease(holder, task_id)
        await other.startup()  # reconnects "now", with the lease already expired
        await asyncio.wait_for(holder.drain(), 10)
        record = await holder.get_task(task_id)
    finally:
        await holder.shutdown()
        await other.shutdown()
    assert record is not None and record.status is TaskStatus.SUCCESS, record
    assert RUNS == ["start:live", "end:live"]


async def test_a_dead_instance_is_recovered_after_one_lease_of_reachable_database(
    schema_db_url: str,
) -> None:
    manager = make_manager(schema_db_url, lease_seconds=1.0)
    await manager.startup()
    try:
        started = asyncio.get_running_loop().time()
        running = dead_row("record_run", TaskStatus.RUNNING, args=["dead"])
        await manager.repository.apply(WriteBatch(inserts=[running]))

        async def recovered() -> bool:
            record = await manager.get_task(running.task_id)
            return record is not None and record.status is TaskStatus.INTERRUPTED

        assert not await recovered()
        await wait_until(recovered, timeout=10)
        waited = asyncio.get_running_loop().time() - started
    finally:
        await manager.shutdown()
    # Not before this instance has reached the database for a whole lease.
    assert waited >= 0.9, waited
    assert RUNS == []


async def _async(check: Any) -> bool:
    return bool(check())


async def _expire_lease(manager: TaskManager, task_id: str) -> None:
    engine = manager.repository.engine  # type: ignore[attr-defined]
    async with engine.begin() as conn:
        await conn.execute(
            update(T)
            .where(T.c.id == task_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=30))
        )
