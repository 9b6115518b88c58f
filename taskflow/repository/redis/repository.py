"""The Redis implementation of ``TaskRepository``: the class, its connection and its start.

The methods live in mixins, one module per job: the write path
(``writes``), claims and leases (``claims``), pub/sub wake-ups
(``wakeups``), reads, schedules, retries, retention, the admin records
and the instances.  This module only composes them, owns the client, and answers
the questions the composition root asks at start.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from taskflow.exceptions import ConfigurationError, TaskArgumentError
from taskflow.models import TaskLogEntry, TaskRecord
from taskflow.repository.base import TaskRepository
from taskflow.repository.redis import codec
from taskflow.repository.redis.admin import RedisAdminRecords
from taskflow.repository.redis.claims import RedisClaims
from taskflow.repository.redis.instances import RedisInstances
from taskflow.repository.redis.keys import KeySpace, check_prefix
from taskflow.repository.redis.one_off import RedisOneOffs
from taskflow.repository.redis.reads import RedisReads
from taskflow.repository.redis.retention import RedisRetention
from taskflow.repository.redis.retries import RedisRetries
from taskflow.repository.redis.schedules import RedisSchedules
from taskflow.repository.redis.wakeups import RedisWakeups
from taskflow.repository.redis.writes import RedisWrites

#: The data format of the keys this version writes (``KeySpace.format_version``).
FORMAT_VERSION = 1

# Errors that say the server is away, busy or failing over, not that the data is wrong.
_TRANSIENT = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
    redis_errors.TryAgainError,
    redis_errors.ClusterDownError,
    redis_errors.MasterDownError,
    redis_errors.ReadOnlyError,
)


class RedisTaskRepository(
    RedisWakeups,
    RedisWrites,
    RedisOneOffs,
    RedisClaims,
    RedisReads,
    RedisSchedules,
    RedisRetries,
    RedisRetention,
    RedisAdminRecords,
    RedisInstances,
    TaskRepository,
):
    """Tasks in one Redis server (or cluster slot), under the key prefix ``key_prefix``.

    Several deployments share a server by using different prefixes; every
    key of one deployment hashes to one slot, so Lua scripts may touch them all.
    """

    def __init__(
        self, url: str, *, key_prefix: str = "taskflow", max_connections: int | None = None
    ) -> None:
        self.url = url
        self.keys = KeySpace(check_prefix(key_prefix))
        # Binary-safe: payloads are bytes, so nothing is decoded behind our back.
        self.client: aioredis.Redis = _client_for(url, max_connections)
        self._init_writes()
        self._init_one_offs()
        self._init_claims()
        self._init_wakeups()

    async def open(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        await self._stop_wakeups()
        await self.client.aclose()

    async def prepare_schema(self, *, migrate: bool) -> str | None:
        # SET NX: the first process to start writes the version, the others read it.
        key = self.keys.format_version
        if migrate:
            await self.client.set(key, str(FORMAT_VERSION), nx=True)
        stored = await self.client.get(key)
        # The format problem first: it is the one that needs fixing before anything works.
        problems = [format_problem(self.keys, stored), await persistence_warning(self.client)]
        return ". Also: ".join(problem for problem in problems if problem) or None

    def is_transient(self, exc: BaseException) -> bool:
        # A ResponseError (a script's own error, a wrong type) is about the data.
        return isinstance(exc, (*_TRANSIENT, ConnectionError, TimeoutError))

    @property
    def is_local(self) -> bool:
        return False

    @property
    def prepares_itself(self) -> bool:
        # A format version under the prefix is all there is to set up.
        return True

    @property
    def is_process_private(self) -> bool:
        return False

    async def add_to_transaction(
        self, session: Any, record: TaskRecord, on_commit: Callable[[], None]
    ) -> str:
        raise TaskArgumentError(
            "enqueue(session=...) joins the caller's database transaction, which needs a SQL "
            "database; the Redis store has no transaction to join"
        )

    def add_to_transaction_sync(
        self, session: Any, record: TaskRecord, on_commit: Callable[[], None]
    ) -> str:
        raise TaskArgumentError(
            "add_to_session() joins the caller's database transaction, which needs a SQL "
            "database; the Redis store has no transaction to join"
        )

    # -- single-task reads: the hash and its log list ------------------------------

    async def get_task(self, task_id: str, *, with_logs: bool = True) -> TaskRecord | None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.keys.task(task_id))
            pipe.lrange(self.keys.logs(task_id), 0, -1)
            row, raw_logs = await pipe.execute()
        if not row:
            return None
        record = codec.record_from_hash(row)
        if with_logs:
            entries = [codec.log_from_json(task_id, raw) for raw in raw_logs]
            record.logs = codec.render_logs(entries, record.retries_used)
        return record

    async def get_logs(self, task_id: str) -> list[TaskLogEntry]:
        raw_logs = await self.client.lrange(self.keys.logs(task_id), 0, -1)
        return [codec.log_from_json(task_id, raw) for raw in raw_logs]


def format_problem(keys: KeySpace, stored: bytes | str | None) -> str | None:
    """What is wrong with the stored format version ``stored`` (with the fix), or None.

    None for this taskflow's format and older ones; a message for a missing
    version, a value that is no version, and a newer format.
    """
    key = keys.format_version
    if stored is None:
        return (
            f"the Redis keys under prefix {keys.prefix!r} have no format version "
            f"({key}); start once with create_tables=True to initialise them"
        )
    try:
        version = int(stored)
    except ValueError:
        return f"{key} holds {stored!r}, not a format version: is this prefix taskflow's?"
    if version > FORMAT_VERSION:
        return (
            f"the Redis keys under prefix {keys.prefix!r} are in format {version}, "
            f"newer than this taskflow's {FORMAT_VERSION}: upgrade taskflow"
        )
    return None


async def persistence_warning(client: aioredis.Redis) -> str | None:
    """A warning when the server keeps nothing on disk, or None.

    Only when ``CONFIG GET`` answers ``appendonly no`` and an empty ``save``:
    then a restart of Redis loses every task.  Managed services that refuse
    ``CONFIG`` (a ``ResponseError``) get no warning: their persistence is
    configured elsewhere, and guessing would be wrong as often as right.
    """
    try:
        appendonly = _config_value(await client.config_get("appendonly"), "appendonly")
        save = _config_value(await client.config_get("save"), "save")
    except redis_errors.ResponseError:
        return None
    if appendonly != "no" or save != "":
        return None
    return (
        'Redis persists nothing (appendonly no, save ""): a restart of Redis loses every '
        "task, pending ones included; turn on the append-only file with `appendonly yes` "
        "and `appendfsync everysec` (or `always`) in redis.conf, or at runtime with "
        "CONFIG SET appendonly yes then CONFIG REWRITE"
    )


def _config_value(answer: dict[Any, Any], name: str) -> str | None:
    """One parameter of a ``CONFIG GET`` answer (bytes or str), or None when absent."""
    for key, value in answer.items():
        if (key.decode() if isinstance(key, bytes) else key) == name:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def _client_for(url: str, max_connections: int | None) -> aioredis.Redis:
    """A client for ``url``; with ``max_connections``, callers wait for a free connection.

    Options redis-py does not know are refused here, at construction, rather
    than at the first connection.
    """
    try:
        if max_connections is None:
            pool = aioredis.ConnectionPool.from_url(url, decode_responses=False)
        else:
            pool = aioredis.BlockingConnectionPool.from_url(
                url, decode_responses=False, max_connections=max_connections
            )
        pool.connection_class(**pool.connection_kwargs)  # checks the options, connects nothing
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"the Redis URL has an option redis-py does not take ({exc}): remove it, "
            "or see redis-py's from_url() for the options it reads"
        ) from None
    return aioredis.Redis.from_pool(pool)  # closes the pool with the client
