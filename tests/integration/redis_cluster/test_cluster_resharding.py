"""A deployment's slot moved to another primary while two instances run on it.

After the move the node that held the slot answers ``MOVED`` and ends the
shard-channel subscriptions; the instances must follow both: tasks keep
being written and claimed, and change notices keep arriving.
"""

from __future__ import annotations

import asyncio

import pytest

from taskflow import TaskStatus
from tests.integration.redis.redis_app import remember
from tests.integration.redis_cluster.conftest import ClusterDeployment, needs_shard_channels
from tests.polling import wait_for_status

pytestmark = pytest.mark.redis


async def _notice_arrives(deployment: ClusterDeployment, tag: str) -> list[str]:
    """Enqueue on the second instance until the first one's change feed hears of it.

    A notice sent while a subscription is being made again is lost (pub/sub
    keeps nothing), so one enqueue is not enough right after the move.
    """
    watcher, writer = deployment.managers
    waiter = watcher.changes.subscribe()
    sent: list[str] = []
    try:
        waiter.take()
        for attempt in range(10):
            sent.append(await writer.enqueue(remember, f"{tag}-{attempt}"))
            if await waiter.wait(timeout=1):
                return sent
            await asyncio.sleep(0.3)  # past the notices' 0.25 s gap
    finally:
        waiter.unsubscribe()
    raise AssertionError(f"no change notice for {tag} in 10 tries")


@needs_shard_channels
async def test_instances_follow_their_slot_to_another_primary(
    deployment: ClusterDeployment,
) -> None:
    cluster = deployment.cluster
    slot = cluster.slot_of(f"{{{deployment.prefix}}}")
    home, away = deployment.port, cluster.ports[-1]
    watcher = await deployment.started()
    await deployment.started()
    before = await _notice_arrives(deployment, "before")
    assert len(before) == 1
    await wait_for_status(watcher, before[0], {TaskStatus.SUCCESS})
    await asyncio.sleep(0.3)  # past the notices' 0.25 s gap
    try:
        await asyncio.to_thread(cluster.move_slot, slot, away)
        deployment.port = away
        assert deployment.keys_on(home) == []
        assert f"{{{deployment.prefix}}}:format".encode() in deployment.keys_on(away)
        after = await _notice_arrives(deployment, "after")
        assert len(after) <= 3, after  # notices resume within about a second
        for task_id in [*before, *after]:
            record = await wait_for_status(watcher, task_id, {TaskStatus.SUCCESS})
            assert record.result is not None and record.result["ran"] == "loop"
    finally:
        for manager in deployment.managers:
            await asyncio.wait_for(manager.shutdown(), 30)
        # The session's cluster goes back to its even layout for the other tests.
        await asyncio.to_thread(cluster.move_slot, slot, home)
        deployment.port = home
