"""The instance records on Redis: register, deregister, list, and the live ones' running counts.

Every instance of a deployment reads the others' records to know who is
alive (the admin API, lease decisions), so they are stored in the shared
Redis, as SQL keeps them in ``taskflow_instances``.

Layout (``heartbeat``, in ``claims``, updates the same two keys):
``instance(id)``, a hash with the fields ``hostname``, ``pid``,
``started_at``, ``heartbeat_at`` and, when set, ``version`` and
``stopped_at`` (instants in microseconds since the epoch); and
``instances``, a sorted set of instance ids scored by ``heartbeat_at``,
which lists them newest heartbeat first and filters ``alive_since`` by score.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from taskflow.models import TaskStatus
from taskflow.repository.redis.codec import as_mapping, from_us, to_us
from taskflow.repository.redis.connection import RedisClient
from taskflow.repository.redis.fields import with_fields
from taskflow.repository.redis.keys import KeySpace
from taskflow.repository.redis.lua_script import LuaScript
from taskflow.repository.values import InstanceInfo, InstanceStatus

# KEYS: the instance's hash, the heartbeat index; ARGV: heartbeat_at, instance
# id, then the hash's field/value pairs.  Replacing the whole hash clears
# ``stopped_at`` (a live record again) and a version the new one lacks, as
# SQL's upsert does.
_REGISTER = LuaScript("""
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
""")

# KEYS: the instance's hash, the heartbeat index; ARGV: now, instance id.
# An unknown id is left alone, as SQL's UPDATE matches no row.
_DEREGISTER = LuaScript("""
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'stopped_at', ARGV[1], 'heartbeat_at', ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
return 1
""")

# KEYS: the heartbeat index.  ARGV: lowest heartbeat ('-inf' for all), the
# prefixes of the instance hashes, of the owned sets and of the task hashes,
# the running status, and '1' to list only live instances with their counts.
# One script, so the list and the counts are one snapshot.
_LIST = LuaScript(
    with_fields("""
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], '+inf', ARGV[1], 'BYSCORE', 'REV')) do
  local key = ARGV[2] .. id
  local live = ARGV[6] == '1'
  if not (live and redis.call('HEXISTS', key, 'stopped_at') == 1) then
    local fields = redis.call('HGETALL', key)
    if #fields > 0 then
      local running = 0
      if live then
        for _, task in ipairs(redis.call('SMEMBERS', ARGV[3] .. id)) do
          if redis.call('HGET', ARGV[4] .. task, $status) == ARGV[5] then
            running = running + 1
          end
        end
      end
      out[#out + 1] = {id, running, fields}
    end
  end
end
return out
""")
)


def instance_key(keys: KeySpace, instance_id: str) -> str:
    """The hash of one instance's record."""
    return keys.key("instance", instance_id)


def heartbeat_index(keys: KeySpace) -> str:
    """The sorted set of instance ids scored by their last heartbeat (microseconds)."""
    return keys.key("instances")


def _info(instance_id: bytes, flat: list[bytes]) -> InstanceInfo:
    row = as_mapping(flat)
    version = row.get(b"version")
    stopped_at = row.get(b"stopped_at")
    return InstanceInfo(
        instance_id=instance_id.decode("utf-8"),
        hostname=row[b"hostname"].decode("utf-8"),
        pid=int(row[b"pid"]),
        started_at=from_us(row[b"started_at"]),
        heartbeat_at=from_us(row[b"heartbeat_at"]),
        version=None if version is None else version.decode("utf-8"),
        stopped_at=None if stopped_at is None else from_us(stopped_at),
    )


class RedisInstances:
    """The instance methods of ``RedisTaskRepository``, ``list_live_instances`` included."""

    # Set by RedisTaskRepository.__init__.
    client: RedisClient
    keys: KeySpace

    async def register_instance(self, instance: InstanceInfo) -> None:
        fields: dict[str, Any] = {
            "hostname": instance.hostname,
            "pid": instance.pid,
            "started_at": to_us(instance.started_at),
            "heartbeat_at": to_us(instance.heartbeat_at),
        }
        if instance.version is not None:
            fields["version"] = instance.version
        await _REGISTER(
            self.client,
            keys=[instance_key(self.keys, instance.instance_id), heartbeat_index(self.keys)],
            args=[
                fields["heartbeat_at"],
                instance.instance_id,
                *(part for pair in fields.items() for part in pair),
            ],
        )

    async def deregister_instance(self, instance_id: str, *, now: datetime) -> None:
        await _DEREGISTER(
            self.client,
            keys=[instance_key(self.keys, instance_id), heartbeat_index(self.keys)],
            args=[to_us(now), instance_id],
        )

    async def _instance_rows(self, alive_since: datetime | None, *, live: bool) -> list[Any]:
        rows: list[Any] = await _LIST(
            self.client,
            keys=[heartbeat_index(self.keys)],
            args=[
                "-inf" if alive_since is None else to_us(alive_since),
                instance_key(self.keys, ""),
                self.keys.owned(""),
                self.keys.task(""),
                TaskStatus.RUNNING.value,
                "1" if live else "0",
            ],
        )
        return rows

    async def list_instances(self, *, alive_since: datetime | None = None) -> list[InstanceInfo]:
        # As SQL: with ``alive_since``, only instances not stopped.
        rows = await self._instance_rows(alive_since, live=False)
        found = [_info(instance_id, flat) for instance_id, _, flat in rows]
        if alive_since is not None:
            found = [info for info in found if info.stopped_at is None]
        return sorted(found, key=lambda info: (-to_us(info.heartbeat_at), info.instance_id))

    async def list_live_instances(self, *, alive_since: datetime) -> list[InstanceStatus]:
        rows = await self._instance_rows(alive_since, live=True)
        statuses = [
            InstanceStatus(_info(instance_id, flat), int(running))
            for instance_id, running, flat in rows
        ]
        return sorted(
            statuses,
            key=lambda status: (
                -to_us(status.instance.heartbeat_at),
                status.instance.instance_id,
            ),
        )
