"""Fixtures of the Redis Cluster tests: deployments whose slots live on chosen primaries.

The session's cluster (``redis_cluster``, ``tests/conftest.py``) is reached
through its first node only; a deployment is placed on another primary by
picking a key prefix whose ``{prefix}`` hash tag falls in that primary's
slots, so every command the test's managers send has to be redirected.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from redis.asyncio.client import PubSub
from redis.cluster import RedisCluster

from tests.integration.redis.redis_app import (
    Deployment,
    clear_records,
)
from tests.redis_cluster import LocalCluster

#: On tests of wake-ups: redis-py's asyncio client reads shard channels from 8.0 on.
needs_shard_channels = pytest.mark.skipif(
    not hasattr(PubSub, "ssubscribe"),
    reason="this redis-py cannot read shard channels (redis-py 8 can): instances poll instead",
)


def prefix_on(cluster: LocalCluster, port: int) -> str:
    """A fresh key prefix whose slot the primary on ``port`` serves."""
    while True:
        prefix = "tc" + uuid.uuid4().hex[:10]
        if cluster.node_of(f"{{{prefix}}}") == port:
            return prefix


class ClusterDeployment(Deployment):
    """A ``Deployment`` on the cluster, under a prefix served by the primary on ``port``."""

    def __init__(self, cluster: LocalCluster, port: int) -> None:
        super().__init__(cluster.url)
        self.cluster = cluster
        self.port = port
        self.prefix = prefix_on(cluster, port)
        self.url = f"{cluster.url}?key_prefix={self.prefix}"

    def keys_on(self, port: int) -> list[bytes]:
        """This deployment's keys stored on the node on ``port`` (asked directly, no routing)."""
        with redis.Redis(port=port) as client:
            return list(client.scan_iter(match=f"{{{self.prefix}}}:*", count=1000))

    def stored_keys(self) -> list[bytes]:
        return self.keys_on(self.port)

    def delete_keys(self) -> None:
        doomed = self.stored_keys()
        with RedisCluster(host="127.0.0.1", port=self.cluster.ports[0]) as client:
            for start in range(0, len(doomed), 500):
                client.delete(*doomed[start : start + 500])


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    clear_records()


@pytest.fixture
def away_ports(redis_cluster: LocalCluster) -> list[int]:
    """The primaries other than the one taskflow is pointed at: every command is redirected."""
    return redis_cluster.ports[1:]


@pytest.fixture
def deployments(
    redis_cluster: LocalCluster, away_ports: list[int]
) -> Iterator[list[ClusterDeployment]]:
    """Two deployments, on the second and the third primary; their keys are deleted after."""
    built = [ClusterDeployment(redis_cluster, port) for port in away_ports]
    try:
        yield built
    finally:
        for deployment in built:
            deployment.delete_keys()


@pytest.fixture
async def deployment(
    redis_cluster: LocalCluster, away_ports: list[int]
) -> AsyncIterator[ClusterDeployment]:
    """One deployment on the second primary; its managers shut down and its keys deleted after."""
    built = ClusterDeployment(redis_cluster, away_ports[0])
    try:
        yield built
    finally:
        try:
            for manager in built.managers:
                if manager.started:
                    await asyncio.wait_for(manager.shutdown(), 30)
        finally:
            built.delete_keys()
