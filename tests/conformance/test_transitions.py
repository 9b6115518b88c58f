"""transition(): a move guarded by status and epoch; the epoch bump fences the old owner."""

from __future__ import annotations

import asyncio

import pytest

from taskflow.models import TaskStatus, utcnow
from taskflow.repository.base import TaskRepository, WriteBatch
from tests.conformance.records import TERMINAL, at, finished, held_by, make_record, tid


async def test_wrong_status_epoch_or_id_is_refused(backend: TaskRepository) -> None:
    record = make_record(1, lease_epoch=3, owner="instance-a")
    await backend.apply(WriteBatch(inserts=[record]))
    refusals = [
        await backend.transition(
            record.task_id,
            expected_status=[TaskStatus.RUNNING],
            expected_epoch=3,
            status=TaskStatus.CANCELLED,
        ),
        await backend.transition(
            record.task_id,
            expected_status=[TaskStatus.PENDING],
            expected_epoch=2,
            status=TaskStatus.CANCELLED,
        ),
        await backend.transition(
            tid(404),
            expected_status=[TaskStatus.PENDING],
            expected_epoch=None,
            status=TaskStatus.CANCELLED,
        ),
    ]
    assert refusals == [False, False, False]
    assert await backend.get_task(record.task_id, with_logs=False) == record


async def test_applied_transition_bumps_the_epoch(backend: TaskRepository) -> None:
    record = make_record(1, lease_epoch=3, owner="instance-a")
    await backend.apply(WriteBatch(inserts=[record]))
    before = utcnow()
    assert await backend.transition(
        record.task_id,
        expected_status=[TaskStatus.PENDING, TaskStatus.RUNNING],
        expected_epoch=3,
        status=TaskStatus.RUNNING,
    )
    loaded = await backend.get_task(record.task_id, with_logs=False)
    assert loaded is not None
    assert (loaded.status, loaded.lease_epoch) == (TaskStatus.RUNNING, 4)
    assert loaded.owner == "instance-a"  # only a terminal status clears the lease
    assert loaded.end_time is None
    assert loaded.updated_at >= before


async def test_no_bump_and_no_epoch_guard(backend: TaskRepository) -> None:
    record = make_record(1, status=TaskStatus.RUNNING, lease_epoch=4)
    await backend.apply(WriteBatch(inserts=[record]))
    assert await backend.transition(
        record.task_id,
        expected_status=[TaskStatus.RUNNING],
        expected_epoch=None,
        status=TaskStatus.PENDING,
        bump_epoch=False,
    )
    loaded = await backend.get_task(record.task_id, with_logs=False)
    assert loaded is not None and (loaded.status, loaded.lease_epoch) == (TaskStatus.PENDING, 4)


@pytest.mark.parametrize("terminal", TERMINAL, ids=[s.value for s in TERMINAL])
async def test_terminal_transition_finishes_and_fences_the_owner(
    backend: TaskRepository, terminal: TaskStatus
) -> None:
    record = held_by(make_record(1, lease_epoch=7), "instance-a", until=at(300))
    await backend.apply(WriteBatch(inserts=[record]))
    before = utcnow()
    assert await backend.transition(
        record.task_id,
        expected_status=[TaskStatus.RUNNING],
        expected_epoch=7,
        status=terminal,
        error="stopped ✋",
    )
    loaded = await backend.get_task(record.task_id, with_logs=False)
    assert loaded is not None
    assert (loaded.status, loaded.lease_epoch, loaded.error) == (terminal, 8, "stopped ✋")
    assert loaded.owner is None and loaded.lease_expires_at is None
    assert loaded.end_time is not None and loaded.end_time >= before
    assert loaded.start_time == record.start_time
    # The old owner's final write, still carrying epoch 7, no longer lands.
    late = finished(record, TaskStatus.SUCCESS, end=at(400), lease_epoch=7)
    assert (await backend.apply(WriteBatch(updates=[late]))).fenced == {record.task_id}
    reloaded = await backend.get_task(record.task_id, with_logs=False)
    assert reloaded is not None and reloaded.status is terminal


async def test_stale_epoch_after_a_bump_is_refused(backend: TaskRepository) -> None:
    record = make_record(1, lease_epoch=1)
    await backend.apply(WriteBatch(inserts=[record]))

    async def cancel(epoch: int) -> bool:
        return await backend.transition(
            record.task_id,
            expected_status=[TaskStatus.PENDING],
            expected_epoch=epoch,
            status=TaskStatus.CANCELLED,
        )

    assert await backend.transition(
        record.task_id,
        expected_status=[TaskStatus.PENDING],
        expected_epoch=1,
        status=TaskStatus.PENDING,
    )
    assert not await cancel(1)
    assert await cancel(2)


async def test_concurrent_transitions_have_one_winner(
    pair: tuple[TaskRepository, TaskRepository],
) -> None:
    first, second = pair
    records = [make_record(n, status=TaskStatus.RUNNING, lease_epoch=1) for n in range(1, 4)]
    await first.apply(WriteBatch(inserts=records))
    for record in records:
        results = await asyncio.gather(
            first.transition(
                record.task_id,
                expected_status=[TaskStatus.RUNNING],
                expected_epoch=1,
                status=TaskStatus.CANCELLED,
            ),
            second.transition(
                record.task_id,
                expected_status=[TaskStatus.RUNNING],
                expected_epoch=1,
                status=TaskStatus.SUCCESS,
            ),
        )
        assert sorted(results) == [False, True], results
        loaded = await first.get_task(record.task_id, with_logs=False)
        assert loaded is not None
        assert loaded.status is (TaskStatus.CANCELLED if results[0] else TaskStatus.SUCCESS)
        assert loaded.lease_epoch == 2  # bumped once, by the winner alone
