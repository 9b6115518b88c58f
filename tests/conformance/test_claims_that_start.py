"""claim(start_executor=...): the claim itself records the start; plain claims leave such rows."""

from __future__ import annotations

import asyncio

from taskflow.models import TaskStatus
from taskflow.repository.base import TaskRepository, WriteBatch
from tests.conformance.records import at, held_by, make_record, tid

NOW = at(1000)
LEASE = at(1030)


async def test_a_starting_claim_records_running_with_its_start_time(
    backend: TaskRepository,
) -> None:
    await backend.apply(WriteBatch(inserts=[make_record(1, executor="async", lease_epoch=3)]))
    claimed = await backend.claim(
        "instance-a", now=NOW, lease_until=LEASE, limit=5, start_executor="async"
    )
    assert [r.task_id for r in claimed] == [tid(1)]
    for record in [claimed[0], await backend.get_task(tid(1), with_logs=False)]:
        assert record is not None
        assert record.status is TaskStatus.RUNNING
        assert (record.start_time, record.end_time) == (NOW, None)
        assert (record.owner, record.lease_epoch, record.lease_expires_at) == (
            "instance-a",
            4,
            LEASE,
        )


async def test_a_starting_claim_takes_only_due_pending_rows_of_its_executor(
    backend: TaskRepository,
) -> None:
    rows = [
        make_record(1, executor="async"),
        make_record(2, executor="thread"),
        make_record(3, executor="process"),
        make_record(4, executor=None),
        make_record(5, executor="async", run_at=at(1001)),  # not due yet
        held_by(make_record(6, executor="async"), "instance-dead", until=at(999)),
    ]
    await backend.apply(WriteBatch(inserts=rows))
    claimed = await backend.claim(
        "instance-a", now=NOW, lease_until=LEASE, limit=10, start_executor="async"
    )
    # A running row of a dead instance is recovered by a plain claim, never "started".
    assert [r.task_id for r in claimed] == [tid(1)]
    thread = await backend.claim(
        "instance-a", now=NOW, lease_until=LEASE, limit=10, start_executor="thread"
    )
    assert [r.task_id for r in thread] == [tid(2)]


async def test_a_starting_claim_respects_limit_and_priority(backend: TaskRepository) -> None:
    rows = [make_record(n, executor="async", priority=n) for n in range(1, 5)]
    rows.append(make_record(5, executor="async"))  # no priority: after every priority
    await backend.apply(WriteBatch(inserts=rows))
    first = await backend.claim(
        "instance-a", now=NOW, lease_until=LEASE, limit=2, start_executor="async"
    )
    assert [r.task_id for r in sorted(first, key=lambda r: -(r.priority or 0))] == [tid(4), tid(3)]
    rest = await backend.claim(
        "instance-a", now=NOW, lease_until=LEASE, limit=3, start_executor="async"
    )
    assert {r.task_id for r in rest} == {tid(1), tid(2), tid(5)}


async def test_plain_claims_leave_pending_rows_of_starting_executors(
    backend: TaskRepository,
) -> None:
    rows = [
        make_record(1, executor="async"),
        make_record(2, executor="thread"),
        make_record(3, executor="process"),
        make_record(4, executor=None),
        held_by(make_record(5, executor="async"), "instance-dead", until=at(999)),
    ]
    await backend.apply(WriteBatch(inserts=rows))
    claimed = await backend.claim(
        "instance-a", now=NOW, lease_until=LEASE, limit=10, leave_to_start=("async", "thread")
    )
    assert {r.task_id for r in claimed} == {tid(3), tid(4), tid(5)}
    assert all(r.status is not TaskStatus.PENDING or r.executor != "async" for r in claimed)
    untouched = await backend.get_task(tid(1), with_logs=False)
    assert untouched is not None and untouched.owner is None


async def test_concurrent_starting_claims_never_share_a_row(
    backend: TaskRepository, pair: tuple[TaskRepository, TaskRepository]
) -> None:
    await backend.apply(
        WriteBatch(inserts=[make_record(n, executor="async") for n in range(1, 41)])
    )
    first, second = pair

    async def take(repository: TaskRepository, owner: str) -> list[str]:
        taken: list[str] = []
        while True:
            claimed = await repository.claim(
                owner, now=NOW, lease_until=LEASE, limit=3, start_executor="async"
            )
            if not claimed:
                return taken
            taken += [r.task_id for r in claimed]

    a, b = await asyncio.gather(take(first, "instance-a"), take(second, "instance-b"))
    assert not set(a) & set(b)
    assert sorted(a + b) == sorted(tid(n) for n in range(1, 41))
