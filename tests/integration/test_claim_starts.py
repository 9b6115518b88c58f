"""Queued tasks started by their claim: never more at once than free slots, no slot lost.

Rows that no local queue holds (enqueued in another process's transaction,
left by a dead instance) are claimed only as far as slots are free, and the
claim records their start; these tests hold the instance to its
``max_concurrent_tasks`` and check that every reserved slot comes back, also
when a claimed row cannot run here.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta

import pytest

from taskflow import TaskManager, get_task_context
from taskflow.ids import new_task_id
from taskflow.models import TaskRecord, TaskStatus, utcnow
from taskflow.repository.base import WriteBatch
from tests.conftest import EVERY_BACKEND

RUNNING_NOW: list[int] = [0]
MOST_AT_ONCE: list[int] = [0]


CALLED_AT: dict[str, datetime] = {}


async def slow_job() -> None:
    context = get_task_context()
    assert context is not None
    CALLED_AT[context.task_id] = utcnow()
    RUNNING_NOW[0] += 1
    MOST_AT_ONCE[0] = max(MOST_AT_ONCE[0], RUNNING_NOW[0])
    try:
        await asyncio.sleep(0.1)
    finally:
        RUNNING_NOW[0] -= 1


def queued(func_name: str, executor: str = "async") -> TaskRecord:
    """A due, unowned row, as another process's ``enqueue(session=...)`` leaves it."""
    now = utcnow() - timedelta(seconds=1)
    return TaskRecord(
        task_id=new_task_id(),
        func_name=func_name,
        status=TaskStatus.PENDING,
        created_at=now,
        run_at=now,
        updated_at=now,
        executor=executor,
    )


async def settle(manager: TaskManager, ids: list[str]) -> list[TaskRecord]:
    for _ in range(600):
        records = [await manager.get_task(task_id) for task_id in ids]
        if all(
            r is not None and r.status not in (TaskStatus.PENDING, TaskStatus.RUNNING)
            for r in records
        ):
            return [r for r in records if r is not None]
        await asyncio.sleep(0.05)
    raise AssertionError("queued tasks did not finish in 30 s")


async def test_claims_start_no_more_than_free_slots_and_give_every_slot_back(
    schema_db_url: str,
) -> None:
    RUNNING_NOW[0] = MOST_AT_ONCE[0] = 0
    manager = TaskManager(database_url=schema_db_url, max_concurrent_tasks=3, poll_interval=0.05)
    manager.task(name="slow_job")(slow_job)
    await manager.startup()
    try:
        for _round in range(2):  # a slot lost in the first round would show in the second
            rows = [queued("slow_job") for _ in range(30)]
            await manager.repository.apply(WriteBatch(inserts=rows))
            done = await settle(manager, [r.task_id for r in rows])
            assert {r.status for r in done} == {TaskStatus.SUCCESS}
            for record in done:
                assert record.start_time is not None and record.end_time is not None
                assert record.start_time <= record.end_time
                # Called as soon as the claim recorded its start: a claim that
                # took more rows than free slots would leave rows saying
                # running while they wait their turn (up to 0.9 s here).
                waited = CALLED_AT[record.task_id] - record.start_time
                assert waited < timedelta(seconds=0.35), (record.task_id, waited)
        assert 1 <= MOST_AT_ONCE[0] <= 3
    finally:
        await manager.shutdown()


async def test_a_claimed_row_that_cannot_run_here_gives_its_slot_back(
    schema_db_url: str,
) -> None:
    RUNNING_NOW[0] = MOST_AT_ONCE[0] = 0
    manager = TaskManager(database_url=schema_db_url, max_concurrent_tasks=1, poll_interval=0.05)
    manager.task(name="slow_job")(slow_job)
    await manager.startup()
    try:
        unknown = [queued("not_registered_here") for _ in range(3)]
        runnable = [queued("slow_job") for _ in range(3)]
        await manager.repository.apply(WriteBatch(inserts=unknown + runnable))
        done = {
            r.task_id: r for r in await settle(manager, [r.task_id for r in unknown + runnable])
        }
        for row in unknown:
            assert done[row.task_id].status is TaskStatus.FAILED
            assert "not_registered_here" in (done[row.task_id].error or "")
        assert {done[r.task_id].status for r in runnable} == {TaskStatus.SUCCESS}
        assert MOST_AT_ONCE[0] == 1
    finally:
        await manager.shutdown()


async def test_a_row_claimed_by_its_start_runs_once_and_is_not_claimed_again(
    schema_db_url: str,
) -> None:
    """Two instances burn one queue down: every task runs exactly once."""
    ran: list[str] = []

    async def once(tag: str) -> None:
        ran.append(tag)
        await asyncio.sleep(0)

    managers = [
        TaskManager(database_url=schema_db_url, max_concurrent_tasks=4, poll_interval=0.05)
        for _ in range(2)
    ]
    for manager in managers:
        manager.task(name="once")(once)
        await manager.startup()
    try:
        rows = []
        for n in range(60):
            row = queued("once")
            row.args = (str(n),)
            rows.append(row)
        await managers[0].repository.apply(WriteBatch(inserts=rows))
        done = await settle(managers[1], [r.task_id for r in rows])
        assert {r.status for r in done} == {TaskStatus.SUCCESS}
        assert sorted(ran) == sorted(str(n) for n in range(60))
    finally:
        for manager in managers:
            await manager.shutdown()


RUNS: Counter[str] = Counter()


async def quick_job() -> None:
    context = get_task_context()
    assert context is not None
    RUNS[context.task_id] += 1
    RUNNING_NOW[0] += 1
    MOST_AT_ONCE[0] = max(MOST_AT_ONCE[0], RUNNING_NOW[0])
    try:
        await asyncio.sleep(0.002)
    finally:
        RUNNING_NOW[0] -= 1


@pytest.mark.parametrize("backend_name", EVERY_BACKEND, indirect=True)
async def test_claims_sent_beside_the_loop_keep_to_the_slots_and_run_each_task_once(
    store_url: str, backend_name: str
) -> None:
    """On a server, slots freed during a claim are claimed at once, not after it returns."""
    RUNNING_NOW[0] = MOST_AT_ONCE[0] = 0
    RUNS.clear()
    manager = TaskManager(database_url=store_url, max_concurrent_tasks=8, poll_interval=0.05)
    manager.task(name="quick_job")(quick_job)
    await manager.startup()
    try:
        rows = [queued("quick_job") for _ in range(400)]
        for start in range(0, len(rows), 100):
            await manager.repository.apply(WriteBatch(inserts=rows[start : start + 100]))
        done = await settle(manager, [r.task_id for r in rows])
        assert {r.status for r in done} == {TaskStatus.SUCCESS}
        assert Counter({r.task_id: 1 for r in rows}) == RUNS
        assert 0 < MOST_AT_ONCE[0] <= 8
        flights = manager.runtime.dispatcher.flights_sent
    finally:
        await manager.shutdown()
    if backend_name == "redis":
        assert flights > 0
    else:
        assert flights == 0  # the SQL databases claim one at a time
