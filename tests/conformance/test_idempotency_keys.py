"""insert_with_key(): one live task per idempotency key; a failed task frees its key."""

from __future__ import annotations

import asyncio

from taskflow.models import TaskStatus
from taskflow.repository.base import TaskRepository, WriteBatch
from tests.conformance.records import at, finished, make_record, tid


async def test_first_insert_takes_the_key(backend: TaskRepository) -> None:
    record = make_record(1, idempotency_key="order-42")
    assert await backend.insert_with_key(record) == record.task_id
    assert await backend.get_task(record.task_id, with_logs=False) == record


async def test_taken_key_returns_the_holder_and_inserts_nothing(backend: TaskRepository) -> None:
    first = make_record(1, idempotency_key="order-42")
    await backend.insert_with_key(first)
    second = make_record(2, idempotency_key="order-42")
    assert await backend.insert_with_key(second) == first.task_id
    assert await backend.get_task(second.task_id) is None


async def test_key_stays_taken_by_live_and_successful_tasks(backend: TaskRepository) -> None:
    first = make_record(1, idempotency_key="order-42")
    await backend.insert_with_key(first)
    done = finished(first, TaskStatus.SUCCESS, end=at(5))
    await backend.apply(WriteBatch(updates=[done]))
    assert await backend.insert_with_key(make_record(2, idempotency_key="order-42")) == tid(1)
    assert await backend.get_task(tid(2)) is None


async def test_failed_task_frees_its_key(backend: TaskRepository) -> None:
    first = make_record(1, idempotency_key="order-42")
    await backend.insert_with_key(first)
    await backend.apply(WriteBatch(updates=[finished(first, TaskStatus.FAILED, end=at(5))]))
    retry = make_record(2, idempotency_key="order-42")
    assert await backend.insert_with_key(retry) == retry.task_id
    assert await backend.get_task(retry.task_id, with_logs=False) == retry
    # And the new holder keeps it.
    assert await backend.insert_with_key(make_record(3, idempotency_key="order-42")) == tid(2)


async def test_distinct_keys_do_not_interfere(backend: TaskRepository) -> None:
    assert await backend.insert_with_key(make_record(1, idempotency_key="a")) == tid(1)
    assert await backend.insert_with_key(make_record(2, idempotency_key="b")) == tid(2)


async def test_racing_inserts_of_one_key_make_one_task(
    pair: tuple[TaskRepository, TaskRepository],
) -> None:
    first, second = pair
    candidates = [make_record(n, idempotency_key="race") for n in range(1, 7)]
    winners = await asyncio.gather(
        *(
            (first if n % 2 else second).insert_with_key(record)
            for n, record in enumerate(candidates)
        )
    )
    assert len(set(winners)) == 1
    [winner] = set(winners)
    for record in candidates:
        stored = await first.get_task(record.task_id, with_logs=False)
        assert (stored is not None) == (record.task_id == winner)
