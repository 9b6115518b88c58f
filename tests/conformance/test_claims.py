"""claim(): due, unheld work goes to exactly one instance, with a new lease and epoch."""

from __future__ import annotations

import asyncio

from taskflow.models import TaskStatus
from taskflow.repository.base import TaskRepository, WriteBatch
from tests.conformance.records import at, finished, held_by, make_record, tid

NOW = at(1000)
LEASE = at(1030)


async def test_due_pending_tasks_are_claimed_with_lease_and_epoch(
    backend: TaskRepository,
) -> None:
    records = [make_record(n, lease_epoch=n) for n in range(1, 4)]
    await backend.apply(WriteBatch(inserts=records))
    claimed = await backend.claim("instance-a", now=NOW, lease_until=LEASE, limit=10)
    assert sorted(r.task_id for r in claimed) == [tid(1), tid(2), tid(3)]
    for record in claimed:
        n = int(record.task_id[:8], 16)
        assert (record.owner, record.lease_expires_at) == ("instance-a", LEASE)
        assert record.lease_epoch == n + 1
        assert record.status is TaskStatus.PENDING  # the caller decides what starts
        stored = await backend.get_task(record.task_id, with_logs=False)
        assert stored is not None
        assert (stored.owner, stored.lease_epoch) == ("instance-a", n + 1)


async def test_not_yet_due_tasks_stay_unclaimed(backend: TaskRepository) -> None:
    due = make_record(1, run_at=NOW)
    later = make_record(2, run_at=at(1001))
    await backend.apply(WriteBatch(inserts=[due, later]))
    claimed = await backend.claim("instance-a", now=NOW, lease_until=LEASE, limit=10)
    assert [r.task_id for r in claimed] == [due.task_id]
    untouched = await backend.get_task(later.task_id, with_logs=False)
    assert untouched == later
    again = await backend.claim("instance-a", now=at(1001), lease_until=LEASE, limit=10)
    assert [r.task_id for r in again] == [later.task_id]


async def test_limit_caps_a_claim(backend: TaskRepository) -> None:
    await backend.apply(WriteBatch(inserts=[make_record(n) for n in range(1, 6)]))
    first = await backend.claim("instance-a", now=NOW, lease_until=LEASE, limit=2)
    second = await backend.claim("instance-b", now=NOW, lease_until=LEASE, limit=10)
    assert len(first) == 2 and len(second) == 3
    assert {r.task_id for r in first} | {r.task_id for r in second} == {tid(n) for n in range(1, 6)}


async def test_higher_priority_is_claimed_first(backend: TaskRepository) -> None:
    low = make_record(1, priority=1)
    high = make_record(2, priority=9)
    await backend.apply(WriteBatch(inserts=[low, high]))
    claimed = await backend.claim("instance-a", now=NOW, lease_until=LEASE, limit=1)
    assert [r.task_id for r in claimed] == [high.task_id]


async def test_live_leases_and_finished_tasks_are_not_claimed(backend: TaskRepository) -> None:
    live_pending = make_record(1, owner="instance-b", lease_expires_at=at(1001))
    live_running = held_by(make_record(2), "instance-b", until=at(1001))
    done = finished(make_record(3), TaskStatus.SUCCESS, end=at(5))
    failed = finished(make_record(4), TaskStatus.FAILED, end=at(5))
    await backend.apply(WriteBatch(inserts=[live_pending, live_running, done, failed]))
    assert await backend.claim("instance-a", now=NOW, lease_until=LEASE, limit=10) == []


async def test_expired_leases_are_taken_over(backend: TaskRepository) -> None:
    abandoned_pending = make_record(1, owner="instance-dead", lease_expires_at=at(999))
    abandoned_running = held_by(make_record(2, lease_epoch=5), "instance-dead", until=at(999))
    await backend.apply(WriteBatch(inserts=[abandoned_pending, abandoned_running]))
    claimed = {
        r.task_id: r
        for r in await backend.claim("instance-a", now=NOW, lease_until=LEASE, limit=10)
    }
    assert set(claimed) == {tid(1), tid(2)}
    taken = claimed[tid(2)]
    assert taken.status is TaskStatus.RUNNING  # what a dead attempt becomes is the caller's call
    assert (taken.owner, taken.lease_epoch, taken.lease_expires_at) == ("instance-a", 6, LEASE)


async def test_take_expired_false_leaves_rows_of_expired_leases(backend: TaskRepository) -> None:
    pending = make_record(1)
    abandoned = held_by(make_record(2, lease_epoch=5), "instance-dead", until=at(999))
    owned = make_record(3, owner="instance-quiet", lease_expires_at=at(999), lease_epoch=2)
    await backend.apply(WriteBatch(inserts=[pending, abandoned, owned]))
    for start_executor in (None, "async"):
        if start_executor is not None:
            await backend.apply(WriteBatch(inserts=[make_record(4, executor="async")]))
        claimed = await backend.claim(
            "instance-a",
            now=NOW,
            lease_until=LEASE,
            limit=10,
            take_expired=False,
            start_executor=start_executor,
        )
        assert [r.task_id for r in claimed] == [tid(1) if start_executor is None else tid(4)]
    assert await backend.get_task(abandoned.task_id, with_logs=False) == abandoned
    assert await backend.get_task(owned.task_id, with_logs=False) == owned


async def test_claimed_tasks_are_not_claimed_again_while_leased(backend: TaskRepository) -> None:
    await backend.apply(WriteBatch(inserts=[make_record(1)]))
    assert len(await backend.claim("instance-a", now=NOW, lease_until=LEASE, limit=10)) == 1
    assert await backend.claim("instance-b", now=NOW, lease_until=LEASE, limit=10) == []
    # Once the lease has run out, another instance may take it (fencing out the first).
    late = await backend.claim("instance-b", now=at(1031), lease_until=at(1060), limit=10)
    assert [(r.owner, r.lease_epoch) for r in late] == [("instance-b", 2)]


async def test_concurrent_claimers_never_share_a_row(
    pair: tuple[TaskRepository, TaskRepository],
) -> None:
    first, second = pair
    await first.apply(WriteBatch(inserts=[make_record(n) for n in range(1, 41)]))
    taken: list[str] = []
    for _ in range(8):
        a, b = await asyncio.gather(
            first.claim("instance-a", now=NOW, lease_until=LEASE, limit=3),
            second.claim("instance-b", now=NOW, lease_until=LEASE, limit=3),
        )
        assert all(r.owner == "instance-a" for r in a)
        assert all(r.owner == "instance-b" for r in b)
        assert not {r.task_id for r in a} & {r.task_id for r in b}
        taken += [r.task_id for r in (*a, *b)]
    assert len(taken) == len(set(taken))
    rest = await first.claim("instance-c", now=NOW, lease_until=LEASE, limit=100)
    assert sorted(taken + [r.task_id for r in rest]) == [tid(n) for n in range(1, 41)]
    for task_id in taken[:5]:
        stored = await first.get_task(task_id, with_logs=False)
        assert stored is not None and stored.lease_epoch == 1
