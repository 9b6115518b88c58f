"""register / list / deregister instances, and the live ones with their running counts."""

from __future__ import annotations

from taskflow.repository.base import TaskRepository, WriteBatch
from tests.conformance.records import at, held_by, instance, make_record


async def test_registered_instances_list_newest_heartbeat_first(backend: TaskRepository) -> None:
    old = instance("instance-old", seen=at(10))
    new = instance("instance-new", seen=at(20), started=at(5))
    await backend.register_instance(old)
    await backend.register_instance(new)
    assert await backend.list_instances() == [new, old]


async def test_alive_since_filters_by_heartbeat(backend: TaskRepository) -> None:
    await backend.register_instance(instance("instance-old", seen=at(10)))
    await backend.register_instance(instance("instance-new", seen=at(20)))
    alive = await backend.list_instances(alive_since=at(15))
    assert [i.instance_id for i in alive] == ["instance-new"]


async def test_deregistered_instance_is_stopped_and_not_alive(backend: TaskRepository) -> None:
    await backend.register_instance(instance("instance-a", seen=at(10)))
    await backend.register_instance(instance("instance-b", seen=at(10)))
    await backend.deregister_instance("instance-a", now=at(30))
    everyone = {i.instance_id: i for i in await backend.list_instances()}
    assert everyone["instance-a"].stopped_at == at(30)
    assert everyone["instance-b"].stopped_at is None
    alive = await backend.list_instances(alive_since=at(5))
    assert [i.instance_id for i in alive] == ["instance-b"]
    live = await backend.list_live_instances(alive_since=at(5))
    assert [s.instance.instance_id for s in live] == ["instance-b"]


async def test_registering_again_refreshes_the_row(backend: TaskRepository) -> None:
    await backend.register_instance(instance("instance-a", seen=at(10)))
    await backend.register_instance(instance("instance-a", seen=at(40)))
    listed = await backend.list_instances()
    assert [(i.instance_id, i.heartbeat_at) for i in listed] == [("instance-a", at(40))]


async def test_live_instances_count_their_running_tasks(backend: TaskRepository) -> None:
    await backend.register_instance(instance("instance-a", seen=at(20)))
    await backend.register_instance(instance("instance-b", seen=at(10)))
    await backend.register_instance(instance("instance-gone", seen=at(1)))
    rows = [
        held_by(make_record(1), "instance-a", until=at(60)),
        held_by(make_record(2), "instance-a", until=at(60)),
        make_record(3, owner="instance-a", lease_expires_at=at(60)),  # claimed, not running
        held_by(make_record(4), "instance-gone", until=at(60)),
    ]
    await backend.apply(WriteBatch(inserts=rows))
    live = await backend.list_live_instances(alive_since=at(5))
    assert [(s.instance.instance_id, s.running) for s in live] == [
        ("instance-a", 2),
        ("instance-b", 0),
    ]
    assert live[0].instance.hostname == "host-instance-a"
