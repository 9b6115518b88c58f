"""arm_once / cancel_once / list_once: one armed one-off per run key, claimed only when due."""

from __future__ import annotations

import asyncio

from taskflow.models import TaskStatus
from taskflow.repository.base import TaskRepository, WriteBatch
from taskflow.repository.one_off import CANCELLED, REPLACED
from tests.conformance.records import at, finished, make_record, tid


async def test_arming_inserts_a_pending_unowned_row_with_its_run_at(
    backend: TaskRepository,
) -> None:
    record = make_record(1, run_at=at(100), source="scheduled", tags={"t": "1"}, priority=3)
    assert await backend.arm_once("close:1", record, now=at(1)) == tid(1)
    assert await backend.get_task(tid(1), with_logs=False) == record
    [armed] = await backend.list_once()
    assert (armed.run_key, armed.task_id, armed.func_name) == ("close:1", tid(1), "send_email")
    assert (armed.fire_at, armed.priority, armed.tags) == (at(100), 3, {"t": "1"})


async def test_a_one_off_is_claimed_only_once_due(backend: TaskRepository) -> None:
    await backend.arm_once("k", make_record(1, run_at=at(100)), now=at(1))
    assert await backend.claim("a", now=at(99), lease_until=at(130), limit=10) == []
    [claimed] = await backend.claim("a", now=at(100), lease_until=at(130), limit=10)
    assert claimed.task_id == tid(1)
    assert await backend.claim("b", now=at(101), lease_until=at(130), limit=10) == []


async def test_arming_a_key_again_replaces_the_pending_task(backend: TaskRepository) -> None:
    await backend.arm_once("k", make_record(1, run_at=at(100)), now=at(1))
    assert await backend.arm_once("k", make_record(2, run_at=at(200)), now=at(2)) == tid(2)
    old = await backend.get_task(tid(1), with_logs=False)
    assert old is not None and old.status is TaskStatus.CANCELLED and old.error == REPLACED
    assert [entry.task_id for entry in await backend.list_once()] == [tid(2)]
    # The replaced task is never claimed; the replacement is, at its own time.
    assert await backend.claim("a", now=at(150), lease_until=at(300), limit=10) == []
    claimed = await backend.claim("a", now=at(200), lease_until=at(300), limit=10)
    assert [record.task_id for record in claimed] == [tid(2)]


async def test_arming_after_the_task_ran_arms_a_new_one(backend: TaskRepository) -> None:
    first = make_record(1, run_at=at(10))
    await backend.arm_once("k", first, now=at(1))
    await backend.apply(WriteBatch(updates=[finished(first, TaskStatus.SUCCESS, end=at(12))]))
    assert await backend.arm_once("k", make_record(2, run_at=at(50)), now=at(20)) == tid(2)
    done = await backend.get_task(tid(1), with_logs=False)
    assert done is not None and done.status is TaskStatus.SUCCESS
    assert [entry.task_id for entry in await backend.list_once()] == [tid(2)]


async def test_cancel_once(backend: TaskRepository) -> None:
    await backend.arm_once("k", make_record(1, run_at=at(100)), now=at(1))
    assert await backend.cancel_once("k", now=at(2)) is True
    cancelled = await backend.get_task(tid(1), with_logs=False)
    assert cancelled is not None and cancelled.status is TaskStatus.CANCELLED
    assert cancelled.error == CANCELLED
    assert await backend.list_once() == []
    assert await backend.claim("a", now=at(100), lease_until=at(130), limit=10) == []
    assert await backend.cancel_once("k", now=at(3)) is False
    assert await backend.cancel_once("never-armed", now=at(3)) is False
    counts = (await backend.metrics()).counts
    assert counts.get("cancelled") == 1


async def test_cancel_once_of_a_started_task_is_false(backend: TaskRepository) -> None:
    await backend.arm_once("k", make_record(1, run_at=at(10), executor="async"), now=at(1))
    started = await backend.claim(
        "a", now=at(10), lease_until=at(40), limit=10, start_executor="async"
    )
    assert [record.status for record in started] == [TaskStatus.RUNNING]
    assert await backend.cancel_once("k", now=at(11)) is False
    running = await backend.get_task(tid(1), with_logs=False)
    assert running is not None and running.status is TaskStatus.RUNNING


async def test_list_once_is_soonest_first_and_bounded(backend: TaskRepository) -> None:
    await backend.arm_once("c", make_record(1, run_at=at(300)), now=at(1))
    await backend.arm_once("a", make_record(2, run_at=at(100)), now=at(2))
    await backend.arm_once("b", make_record(3, run_at=at(200)), now=at(3))
    assert [entry.run_key for entry in await backend.list_once()] == ["a", "b", "c"]
    assert [entry.run_key for entry in await backend.list_once(before=at(250))] == ["a", "b"]
    assert await backend.list_once(before=at(100)) == []


async def test_racing_arms_of_one_key_leave_one_armed(
    pair: tuple[TaskRepository, TaskRepository],
) -> None:
    first, second = pair
    records = [make_record(n, run_at=at(1000)) for n in range(1, 9)]
    await asyncio.gather(
        *(
            (first if n % 2 else second).arm_once("race", record, now=at(n))
            for n, record in enumerate(records)
        )
    )
    armed = await first.list_once()
    assert len(armed) == 1
    pending = []
    for record in records:
        stored = await second.get_task(record.task_id, with_logs=False)
        assert stored is not None
        if stored.status is TaskStatus.PENDING:
            pending.append(stored.task_id)
        else:
            assert stored.status is TaskStatus.CANCELLED
    assert pending == [armed[0].task_id]


async def test_run_keys_and_idempotency_keys_are_apart(backend: TaskRepository) -> None:
    await backend.insert_with_key(make_record(1, idempotency_key="same"))
    assert await backend.arm_once("same", make_record(2, run_at=at(100)), now=at(2)) == tid(2)
    assert await backend.cancel_once("same", now=at(3)) is True
    plain = await backend.get_task(tid(1), with_logs=False)
    assert plain is not None and plain.status is TaskStatus.PENDING


async def test_an_idempotency_key_moves_with_the_replacement(backend: TaskRepository) -> None:
    await backend.arm_once("k", make_record(1, run_at=at(100), idempotency_key="i"), now=at(1))
    replacement = make_record(2, run_at=at(200), idempotency_key="i")
    assert await backend.arm_once("k", replacement, now=at(2)) == tid(2)
    # The key is the replacement's now: a plain task with it gets the replacement's id.
    assert await backend.insert_with_key(make_record(3, idempotency_key="i")) == tid(2)


async def test_an_idempotency_key_held_elsewhere_arms_nothing(backend: TaskRepository) -> None:
    await backend.insert_with_key(make_record(1, idempotency_key="i"))
    await backend.arm_once("k", make_record(2, run_at=at(100)), now=at(2))
    held = make_record(3, run_at=at(200), idempotency_key="i")
    assert await backend.arm_once("k", held, now=at(3)) == tid(1)
    assert await backend.get_task(tid(3)) is None
    # The key's armed task is untouched.
    assert [entry.task_id for entry in await backend.list_once()] == [tid(2)]
