"""The client a Redis URL names: one server, or a Redis Cluster (``redis+cluster://``).

The rest of the backend sends the same commands to either: every key of a
deployment carries one hash tag, so on a cluster each command, script and
pipeline goes to the one primary that owns the deployment's slot, and
redis-py's cluster client follows ``MOVED`` and ``ASK`` redirections when
that slot moves.  What differs is decided here: which client is built, and
which node answers for the slot when a command names no key (``CONFIG GET``,
a pub/sub connection).
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException, SlotNotCoveredError

from taskflow.exceptions import ConfigurationError

#: Either client: both take the same commands, scripts and pipelines.
RedisClient = aioredis.Redis | RedisCluster

#: URL schemes that name a cluster, and the redis-py scheme each stands for.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def cluster_url(url: str) -> str | None:
    """``url`` with the scheme redis-py reads, when it names a cluster; else None."""
    parts = urlsplit(url)
    plain = CLUSTER_SCHEMES.get(parts.scheme.lower())
    if plain is None:
        return None
    return urlunsplit(parts._replace(scheme=plain))


def client_for(url: str, max_connections: int | None) -> RedisClient:
    """A binary-safe client for ``url``; with ``max_connections``, callers wait for a connection.

    On a cluster the cap is not applied: redis-py's cluster client counts
    connections per node and raises once a node has that many, instead of
    waiting, which would fail a burst the single-server pool absorbs.

    Options redis-py does not know are refused here, at construction, rather
    than at the first connection.
    """
    plain = cluster_url(url)
    if plain is not None:
        return _cluster_client(plain)
    try:
        if max_connections is None:
            pool = aioredis.ConnectionPool.from_url(url, decode_responses=False)
        else:
            pool = aioredis.BlockingConnectionPool.from_url(
                url, decode_responses=False, max_connections=max_connections
            )
        pool.connection_class(**pool.connection_kwargs)  # checks the options, connects nothing
    except (TypeError, ValueError) as exc:
        raise _unknown_option(exc) from None
    return aioredis.Redis.from_pool(pool)  # closes the pool with the client


def _cluster_client(url: str) -> RedisCluster:
    try:
        client = RedisCluster.from_url(url, decode_responses=False)
        node = next(iter(client.nodes_manager.startup_nodes.values()))
        node.connection_class(**node.connection_kwargs)  # checks the options, connects nothing
    except RedisClusterException as exc:  # e.g. a database other than 0 in the query
        raise ConfigurationError(f"the Redis Cluster URL cannot be used: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise _unknown_option(exc) from None
    return client


def _unknown_option(exc: Exception) -> ConfigurationError:
    return ConfigurationError(
        f"the Redis URL has an option redis-py does not take ({exc}): remove it, "
        "or see redis-py's from_url() for the options it reads"
    )


async def slot_owner(client: RedisCluster, key: str) -> ClusterNode:
    """The primary that serves ``key``'s slot now, as far as the client's topology knows."""
    await client.initialize()  # no I/O once the topology is known
    node = client.get_node_from_key(key)
    if node is None:  # the slot is not served: the cluster is failing over
        raise SlotNotCoveredError(f"no primary serves the slot of {key!r} yet")
    return node


def node_client(node: ClusterNode) -> aioredis.Redis:
    """A single-server client to ``node``, with the cluster client's credentials and TLS.

    For the commands a cluster client cannot route by key: a pub/sub
    connection that must stay on one node.
    """
    pool = aioredis.ConnectionPool(
        connection_class=node.connection_class, max_connections=2, **node.connection_kwargs
    )
    return aioredis.Redis.from_pool(pool)
