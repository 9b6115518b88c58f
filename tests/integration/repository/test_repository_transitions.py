"""``SqlTaskRepository.transition``: guards on status and epoch, terminal states, one winner.

They run on SQLite, PostgreSQL and MySQL.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from taskflow.models import TaskStatus, utcnow
from taskflow.repository.base import WriteBatch
from taskflow.repository.sql import SqlTaskRepository
from tests.integration.repository.records import BASE, assert_aware_utc, make_record, running, tid

TERMINAL = (TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.INTERRUPTED, TaskStatus.CANCELLED)


async def test_transition_guards_on_status_and_epoch(repo: SqlTaskRepository) -> None:
    record = make_record(1, lease_epoch=3, owner="instance-1")
    await repo.apply(WriteBatch(inserts=[record]))

    wrong_status = await repo.transition(
        record.task_id,
        expected_status=[TaskStatus.RUNNING],
        expected_epoch=3,
        status=TaskStatus.CANCELLED,
    )
    wrong_epoch = await repo.transition(
        record.task_id,
        expected_status=[TaskStatus.PENDING],
        expected_epoch=2,
        status=TaskStatus.CANCELLED,
    )
    missing = await repo.transition(
        tid(404),
        expected_status=[TaskStatus.PENDING],
        expected_epoch=None,
        status=TaskStatus.CANCELLED,
    )
    assert (wrong_status, wrong_epoch, missing) == (False, False, False)
    assert await repo.get_task(record.task_id, with_logs=False) == record

    before = utcnow()
    assert await repo.transition(
        record.task_id,
        expected_status=[TaskStatus.PENDING, TaskStatus.RUNNING],
        expected_epoch=3,
        status=TaskStatus.RUNNING,
    )
    after = utcnow()
    loaded = await repo.get_task(record.task_id, with_logs=False)
    assert loaded is not None
    assert loaded.status is TaskStatus.RUNNING
    assert loaded.lease_epoch == 4
    assert loaded.owner == "instance-1"  # only terminal statuses clear the lease
    assert loaded.end_time is None
    assert before <= loaded.updated_at <= after
    assert_aware_utc(loaded)

    # bump_epoch=False keeps the epoch; expected_epoch=None skips the epoch guard.
    assert await repo.transition(
        record.task_id,
        expected_status=[TaskStatus.RUNNING],
        expected_epoch=None,
        status=TaskStatus.PENDING,
        bump_epoch=False,
    )
    loaded = await repo.get_task(record.task_id, with_logs=False)
    assert loaded is not None
    assert (loaded.status, loaded.lease_epoch) == (TaskStatus.PENDING, 4)
    # The old epoch is now stale.
    assert not await repo.transition(
        record.task_id,
        expected_status=[TaskStatus.PENDING],
        expected_epoch=3,
        status=TaskStatus.RUNNING,
    )


@pytest.mark.parametrize("terminal", TERMINAL, ids=[s.value for s in TERMINAL])
async def test_transition_to_terminal_sets_finished_and_clears_owner(
    repo: SqlTaskRepository, terminal: TaskStatus
) -> None:
    record = make_record(
        1,
        status=TaskStatus.RUNNING,
        lease_epoch=7,
        owner="instance-1",
        lease_expires_at=BASE + timedelta(minutes=5),
        start_time=BASE,
    )
    await repo.apply(WriteBatch(inserts=[record]))
    before = utcnow()
    assert await repo.transition(
        record.task_id,
        expected_status=[TaskStatus.RUNNING],
        expected_epoch=7,
        status=terminal,
        error="stopped ✋",
    )
    after = utcnow()
    loaded = await repo.get_task(record.task_id, with_logs=False)
    assert loaded is not None
    assert loaded.status is terminal
    assert loaded.lease_epoch == 8
    assert loaded.owner is None
    assert loaded.lease_expires_at is None
    assert loaded.error == "stopped ✋"
    assert loaded.end_time is not None and before <= loaded.end_time <= after
    assert loaded.updated_at == loaded.end_time
    assert loaded.start_time == BASE
    assert_aware_utc(loaded)
    # Fenced out afterwards: the running instance's write with epoch 7 no longer applies.
    late = running(record, 3, lease_epoch=7, status=TaskStatus.SUCCESS)
    assert (await repo.apply(WriteBatch(updates=[late]))).fenced == {record.task_id}
    reloaded = await repo.get_task(record.task_id, with_logs=False)
    assert reloaded is not None and reloaded.status is terminal


async def test_concurrent_transitions_have_exactly_one_winner(repo: SqlTaskRepository) -> None:
    records = [make_record(n, status=TaskStatus.RUNNING, lease_epoch=1) for n in range(1, 6)]
    await repo.apply(WriteBatch(inserts=records))
    for record in records:
        results = await asyncio.gather(
            repo.transition(
                record.task_id,
                expected_status=[TaskStatus.RUNNING],
                expected_epoch=1,
                status=TaskStatus.CANCELLED,
            ),
            repo.transition(
                record.task_id,
                expected_status=[TaskStatus.RUNNING],
                expected_epoch=1,
                status=TaskStatus.SUCCESS,
            ),
        )
        assert sorted(results) == [False, True], results
        winner = TaskStatus.CANCELLED if results[0] else TaskStatus.SUCCESS
        loaded = await repo.get_task(record.task_id, with_logs=False)
        assert loaded is not None
        assert loaded.status is winner
        assert loaded.lease_epoch == 2  # bumped once, by the winner only
