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

from redis import exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster

from taskflow.exceptions import ConfigurationError, TaskArgumentError
from taskflow.models import TaskLogEntry, TaskRecord
from taskflow.repository.base import TaskRepository
from taskflow.repository.redis import codec
from taskflow.repository.redis.admin import RedisAdminRecords
from taskflow.repository.redis.claims import RedisClaims
from taskflow.repository.redis.connection import RedisClient, client_for, slot_owner
from taskflow.repository.redis.instances import RedisInstances
from taskflow.repository.redis.keys import KeySpace, check_prefix
from taskflow.repository.redis.lua_script import LuaScript
from taskflow.repository.redis.one_off import RedisOneOffs
from taskflow.repository.redis.reads import RedisReads
from taskflow.repository.redis.retention import RedisRetention
from taskflow.repository.redis.retries import RedisRetries
from taskflow.repository.redis.schedules import RedisSchedules
from taskflow.repository.redis.wakeups import RedisWakeups
from taskflow.repository.redis.writes import RedisWrites

#: The data format of the keys this version writes (``KeySpace.format_version``).
#: 2: task hashes with short field names and no implied values (``fields.py``),
#: no index of the default source; ``upgrade.py`` converts format 1.
FORMAT_VERSION = 2

# KEYS: the task's hash, its log list.  One script, so the two are one snapshot
# on a cluster too, where not every redis-py's client runs MULTI/EXEC.
_TASK_WITH_LOGS = LuaScript("""
return {redis.call('HGETALL', KEYS[1]), redis.call('LRANGE', KEYS[2], 0, -1)}
""")

# Errors that say the server is away, busy or failing over, not that the data is wrong.
_TRANSIENT = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
    redis_errors.TryAgainError,
    redis_errors.ClusterDownError,
    redis_errors.SlotNotCoveredError,  # a cluster failing over: no primary serves the slot yet
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
    ``url`` is what redis-py reads, or ``redis+cluster://`` / ``rediss+cluster://``
    for a Redis Cluster (``connection.py``).
    """

    def __init__(
        self, url: str, *, key_prefix: str = "taskflow", max_connections: int | None = None
    ) -> None:
        self.url = url
        self.keys = KeySpace(check_prefix(key_prefix))
        # Binary-safe: payloads are bytes, so nothing is decoded behind our back.
        self.client: RedisClient = client_for(url, max_connections)
        self._init_writes()
        self._init_one_offs()
        self._init_claims()
        self._init_wakeups()

    async def open(self) -> None:
        if isinstance(self.client, RedisCluster):
            # A keyed read: it reaches the primary of the deployment's slot, not any node.
            await self.client.exists(self.keys.format_version)
        else:
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
        version = stored_version(stored)
        if version is not None and version < FORMAT_VERSION:
            # Reading or writing older keys would mix two formats in one deployment.
            raise ConfigurationError(format_problem(self.keys, stored))
        # The format problem first: it is the one that needs fixing before anything works.
        problems = [
            format_problem(self.keys, stored),
            await persistence_warning(self.client, self.keys),
        ]
        return ". Also: ".join(problem for problem in problems if problem) or None

    def is_transient(self, exc: BaseException) -> bool:
        # A ResponseError (a script's own error, a wrong type) is about the data.
        return isinstance(exc, (*_TRANSIENT, ConnectionError, TimeoutError))

    @property
    def is_local(self) -> bool:
        return False

    @property
    def parallel_claims(self) -> int:
        # Measured: 20,000-job burn-downs, five alternated runs each: 10,278 jobs/s on
        # average with four, 9,685 with one (single runs vary by more than that).
        return 4

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
        keys = [self.keys.task(task_id), self.keys.logs(task_id)]
        flat, raw_logs = await _TASK_WITH_LOGS(self.client, keys=keys, args=[])
        if not flat:
            return None
        record = codec.record_from_hash(codec.as_mapping(flat), task_id)
        if with_logs:
            entries = [codec.log_from_json(task_id, raw) for raw in raw_logs]
            record.logs = codec.render_logs(entries, record.retries_used)
        return record

    async def get_logs(self, task_id: str) -> list[TaskLogEntry]:
        raw_logs = await self.client.lrange(self.keys.logs(task_id), 0, -1)
        return [codec.log_from_json(task_id, raw) for raw in raw_logs]


def stored_version(stored: bytes | str | None) -> int | None:
    """The format version a stored format key holds, or None (missing, or not a number)."""
    try:
        return None if stored is None else int(stored)
    except ValueError:
        return None


def format_problem(keys: KeySpace, stored: bytes | str | None) -> str | None:
    """What is wrong with the stored format version ``stored`` (with the fix), or None.

    None for this taskflow's format; a message for a missing version, a
    value that is no version, an older format (which ``taskflow db upgrade``
    converts) and a newer one.
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
    if version < FORMAT_VERSION:
        return (
            f"the Redis keys under prefix {keys.prefix!r} are in format {version}, older than "
            f"this taskflow's {FORMAT_VERSION}: stop the instances of the older taskflow, "
            f"then run `taskflow db upgrade --url <this Redis URL>`"
        )
    return None


async def persistence_warning(client: RedisClient, keys: KeySpace) -> str | None:
    """A warning when the server keeps nothing on disk, or None.

    On a cluster the server asked is the primary that owns the deployment's slot.

    Only when ``CONFIG GET`` answers ``appendonly no`` and an empty ``save``:
    then a restart of Redis loses every task.  Managed services that refuse
    ``CONFIG`` (a ``ResponseError``) get no warning: their persistence is
    configured elsewhere, and guessing would be wrong as often as right.
    """
    try:
        if isinstance(client, RedisCluster):
            node = await slot_owner(client, keys.format_version)
            answer = await client.config_get("appendonly", target_nodes=node)
            answer.update(await client.config_get("save", target_nodes=node))
        else:
            answer = await client.config_get("appendonly")
            answer.update(await client.config_get("save"))
        appendonly = _config_value(answer, "appendonly")
        save = _config_value(answer, "save")
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
