"""taskflow on a real Redis Cluster, reached through one node while its keys live on others.

Each deployment's prefix hashes to a slot of the second or third primary,
and the URL names the first: the apps only work if every command, script,
pipeline and shard channel is routed to the slot's owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from redis.asyncio.client import PubSub

from taskflow import RedisBackend, TaskAdmin, TaskQuery, TaskStatus
from taskflow.repository.redis import RedisTaskRepository
from tests.integration.redis.redis_app import (
    CALLS,
    FAIL_TIMES,
    ROUTES,
    add_task_routes,
    beat,
    flaky,
    remember,
)
from tests.integration.redis_cluster.conftest import ClusterDeployment, needs_shard_channels
from tests.polling import wait_for_status
from tests.redis_cluster import LocalCluster

pytestmark = pytest.mark.redis


def _finished(client: Any, task_id: str, timeout: float = 15.0) -> dict[str, Any]:
    """The task as ``GET /tasks/{id}`` shows it, once it has succeeded."""
    deadline = time.monotonic() + timeout
    while True:
        data: dict[str, Any] = client.get(f"/tasks/{task_id}").json()
        if data.get("status") == "success":
            return data
        assert time.monotonic() < deadline, data
        time.sleep(0.02)


# Starlette 1.x's TestClient prefers the httpx2 package and warns when it finds httpx.
@pytest.mark.filterwarnings("ignore:Using .httpx. with .starlette.testclient.")
def test_two_apps_on_two_other_primaries_run_tasks_after_the_response(
    redis_cluster: LocalCluster, deployments: list[ClusterDeployment]
) -> None:
    from fastapi.testclient import TestClient

    ports = [deployment.port for deployment in deployments]
    assert len(set(ports)) == 2 and redis_cluster.ports[0] not in ports
    with contextlib.ExitStack() as stack:
        clients = []
        for deployment in deployments:
            manager = deployment.manager()
            app = FastAPI()
            TaskAdmin(app, manager, auto_install=True)
            add_task_routes(app, manager)
            clients.append(stack.enter_context(TestClient(app)))
        for deployment, client in zip(deployments, clients, strict=True):
            for route, (func_name, executor, ran) in ROUTES.items():
                tag = f"{deployment.prefix}-{route}"
                response = client.post(f"/{route}/{tag}")
                assert response.status_code == 200, response.text
                data = _finished(client, response.json()["task_id"])
                assert (data["func_name"], data["executor"]) == (func_name, executor)
                assert data["result"] == {"tag": tag, "ran": ran}
    expected = [f"{d.prefix}-{route}" for d in deployments for route in ROUTES]
    assert sorted(CALLS) == sorted(expected)
    for deployment in deployments:
        stored = deployment.keys_on(deployment.port)
        assert f"{{{deployment.prefix}}}:format".encode() in stored
        assert any(b":task:" in key for key in stored)
        for other in redis_cluster.ports:
            if other != deployment.port:
                assert deployment.keys_on(other) == [], other


async def test_retried_and_scheduled_tasks_are_claimed_by_two_instances(
    deployment: ClusterDeployment,
) -> None:
    """Claims, the schedule-slot script and the retry queue, shared by two instances."""
    managers = []
    for _ in range(2):
        manager = deployment.manager()
        manager.schedule(every=0.2, name="beat")(beat)
        managers.append(manager)
    await asyncio.gather(*(m.startup() for m in managers))
    FAIL_TIMES["shaky"] = 2
    task_id = await managers[0].enqueue(flaky, "shaky")
    record = await wait_for_status(managers[1], task_id, {TaskStatus.SUCCESS}, timeout=15)
    assert record.retries_used == 2 and record.result == "ok shaky"
    await asyncio.sleep(1.2)
    await managers[0].pause_schedule("beat")  # shared state: both stop
    await asyncio.gather(*(m.drain() for m in managers))
    page = await managers[1].list_tasks(TaskQuery(func_name="beat", limit=100))
    slots = Counter(record.scheduled_for for record in page.items)
    assert len(slots) >= 3, slots
    assert max(slots.values()) == 1, slots  # each slot fired once, whichever instance
    assert all(record.status is TaskStatus.SUCCESS for record in page.items)
    assert {s.name: s.paused for s in await managers[1].list_schedules()} == {"beat": True}


@needs_shard_channels
async def test_another_instances_writes_arrive_on_the_shard_channel(
    deployment: ClusterDeployment,
) -> None:
    watcher = await deployment.started()
    writer = await deployment.started()
    waiter = watcher.changes.subscribe()
    try:
        waiter.take()
        task_id = await writer.enqueue(remember, "seen")
        assert await waiter.wait(timeout=5), "no change notice from the other instance"
    finally:
        waiter.unsubscribe()
    await writer.drain()
    record = await watcher.get_task(task_id)
    assert record is not None and record.status is TaskStatus.SUCCESS


async def test_redis_backend_with_cluster_true(deployment: ClusterDeployment) -> None:
    node_url = f"redis://127.0.0.1:{deployment.cluster.ports[0]}/0"
    backend = RedisBackend(node_url, prefix=deployment.prefix, cluster=True)
    assert backend.cluster
    manager = await deployment.started(snapshot_backend=backend)
    assert isinstance(manager.repository, RedisTaskRepository)
    task_id = await manager.enqueue(remember, "via-backend")
    await manager.drain()
    assert (await wait_for_status(manager, task_id, {TaskStatus.SUCCESS})).result == {
        "tag": "via-backend",
        "ran": "loop",
    }
    assert deployment.stored_keys()


async def test_without_shard_channels_in_redis_py_instances_poll(
    deployment: ClusterDeployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py before 8 has no asyncio SSUBSCRIBE: no wake-ups, and tasks still run."""
    monkeypatch.delattr(PubSub, "ssubscribe", raising=False)
    first, second = await deployment.started(), await deployment.started()
    assert await first.repository.listen(lambda: None) is None
    assert await first.repository.listen_changes("me", lambda: None) is None
    FAIL_TIMES["polled"] = 1
    task_id = await second.enqueue(flaky, "polled")  # its retry is claimed by either instance
    record = await wait_for_status(first, task_id, {TaskStatus.SUCCESS}, timeout=15)
    assert record.retries_used == 1


@pytest.fixture
def user_without_channels(redis_cluster: LocalCluster) -> Iterator[str]:
    """An ACL user on every node with every command and key, but no pub/sub channel."""
    for port in redis_cluster.ports:
        with redis.Redis(port=port) as node:
            node.acl_setuser(
                "tf-no-channels",
                enabled=True,
                passwords=["+secret"],
                keys=["*"],
                commands=["+@all"],
                reset_channels=True,
            )
    try:
        yield "tf-no-channels:secret"
    finally:
        for port in redis_cluster.ports:
            with redis.Redis(port=port) as node:
                node.acl_deluser("tf-no-channels")


async def test_a_cluster_refusing_shard_channels_leaves_instances_polling(
    deployment: ClusterDeployment, user_without_channels: str, caplog: pytest.LogCaptureFixture
) -> None:
    """No rights on channels (or a Redis before 7.0, without SSUBSCRIBE): tasks still run."""
    node = deployment.cluster.ports[0]
    url = (
        f"redis+cluster://{user_without_channels}@127.0.0.1:{node}/0?key_prefix={deployment.prefix}"
    )
    first = await deployment.started(url=url)
    second = await deployment.started(url=url)
    assert "wake-ups are off" in caplog.text
    assert await first.repository.listen(lambda: None) is None
    FAIL_TIMES["refused"] = 1
    task_id = await second.enqueue(flaky, "refused")
    record = await wait_for_status(first, task_id, {TaskStatus.SUCCESS}, timeout=15)
    assert record.retries_used == 1
