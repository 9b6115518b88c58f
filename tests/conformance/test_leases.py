"""heartbeat() renews only the leases an instance says it holds; lost_tasks() finds the rest."""

from __future__ import annotations

from taskflow.models import TaskStatus
from taskflow.repository.base import TaskRepository, WriteBatch
from tests.conformance.records import at, finished, held_by, instance, make_record, tid

OLD_LEASE = at(100)
NEW_LEASE = at(200)


async def test_heartbeat_renews_only_held_active_rows(backend: TaskRepository) -> None:
    me = instance("instance-a", seen=at(90))
    await backend.register_instance(me)
    held_running = held_by(make_record(1), "instance-a", until=OLD_LEASE)
    held_pending = make_record(2, owner="instance-a", lease_expires_at=OLD_LEASE)
    not_held = held_by(make_record(3), "instance-a", until=OLD_LEASE)  # its final write was lost
    others = held_by(make_record(4), "instance-b", until=OLD_LEASE)
    await backend.apply(WriteBatch(inserts=[held_running, held_pending, not_held, others]))

    renewed = await backend.heartbeat(
        me, lease_until=NEW_LEASE, held=[tid(1), tid(2), tid(4), tid(404)]
    )

    assert renewed == 2
    leases = {}
    for n in (1, 2, 3, 4):
        stored = await backend.get_task(tid(n), with_logs=False)
        assert stored is not None
        leases[n] = stored.lease_expires_at
    assert leases == {1: NEW_LEASE, 2: NEW_LEASE, 3: OLD_LEASE, 4: OLD_LEASE}


async def test_heartbeat_skips_finished_rows(backend: TaskRepository) -> None:
    me = instance("instance-a", seen=at(90))
    await backend.register_instance(me)
    done = finished(make_record(1), TaskStatus.SUCCESS, end=at(95))
    done.owner, done.lease_expires_at = "instance-a", OLD_LEASE
    await backend.apply(WriteBatch(inserts=[done]))
    assert await backend.heartbeat(me, lease_until=NEW_LEASE, held=[tid(1)]) == 0
    assert await backend.get_task(tid(1), with_logs=False) == done


async def test_heartbeat_with_nothing_held_records_the_instance(backend: TaskRepository) -> None:
    me = instance("instance-a", seen=at(90))
    await backend.register_instance(me)
    later = instance("instance-a", seen=at(150), started=at(90))
    assert await backend.heartbeat(later, lease_until=NEW_LEASE, held=[]) == 0
    [listed] = await backend.list_instances()
    assert listed.heartbeat_at == at(150)


async def test_renewed_lease_keeps_the_task_from_other_claimers(backend: TaskRepository) -> None:
    me = instance("instance-a", seen=at(90))
    await backend.register_instance(me)
    await backend.apply(WriteBatch(inserts=[make_record(1)]))
    [claimed] = await backend.claim("instance-a", now=at(90), lease_until=OLD_LEASE, limit=1)
    await backend.heartbeat(me, lease_until=NEW_LEASE, held=[claimed.task_id])
    assert await backend.claim("instance-b", now=at(150), lease_until=at(300), limit=5) == []


async def test_lost_tasks_of_an_instance(backend: TaskRepository) -> None:
    kept = held_by(make_record(1, lease_epoch=3), "instance-a", until=OLD_LEASE)
    taken_over = held_by(make_record(2, lease_epoch=4), "instance-b", until=OLD_LEASE)
    cancelled = held_by(make_record(3, lease_epoch=2), "instance-a", until=OLD_LEASE)
    await backend.apply(WriteBatch(inserts=[kept, taken_over, cancelled]))
    assert await backend.transition(
        cancelled.task_id,
        expected_status=[TaskStatus.RUNNING],
        expected_epoch=2,
        status=TaskStatus.CANCELLED,
    )
    held = {tid(1): 3, tid(2): 3, tid(3): 2, tid(404): 1}
    assert await backend.lost_tasks("instance-a", held) == {tid(2), tid(3), tid(404)}
    assert await backend.lost_tasks("instance-a", {}) == set()


async def test_a_claim_after_expiry_makes_the_task_lost(backend: TaskRepository) -> None:
    await backend.apply(WriteBatch(inserts=[make_record(1)]))
    [mine] = await backend.claim("instance-a", now=at(50), lease_until=OLD_LEASE, limit=1)
    assert await backend.lost_tasks("instance-a", {mine.task_id: mine.lease_epoch}) == set()
    await backend.claim("instance-b", now=at(101), lease_until=NEW_LEASE, limit=1)
    assert await backend.lost_tasks("instance-a", {mine.task_id: mine.lease_epoch}) == {
        mine.task_id
    }
