"""Converting a deployment's keys from data format 1 to format 2 (``taskflow db upgrade``).

Format 2 stores a task's hash under the short field names of ``fields.py``
and leaves out the values the hash implies; it keeps no index of the
default source (``manual``).  Everything else (indexes, claim queue,
leases, statistics, logs) is the same in both formats, so converting is a
rewrite of each task hash and the removal of one index.

The tasks are converted in batches, walked by rank along the creation
index (which the conversion does not change), one Lua script per batch, so
each batch is atomic and a large deployment never blocks Redis for long.
A hash already in format 2 is left as it is, so an upgrade stopped half way
is resumed by running it again.  The format key is set to 2 only once every
task is converted.  No instance may write meanwhile: an instance of the
older taskflow would write format 1 again, and one of this taskflow refuses
to start on format-1 keys (``repository.format_problem``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from taskflow.exceptions import ConfigurationError
from taskflow.repository.redis.connection import RedisClient
from taskflow.repository.redis.fields import DEFAULT_SOURCE
from taskflow.repository.redis.keys import KeySpace
from taskflow.repository.redis.lua import LIBRARY
from taskflow.repository.redis.lua_script import LuaScript

if TYPE_CHECKING:
    from taskflow.repository.redis.repository import RedisTaskRepository

#: Tasks one script converts at most.
BATCH = 500
#: An instance whose heartbeat is this recent, and that has not stopped, may still write.
LIVE_WINDOW = timedelta(seconds=60)

# ARGV after the prefix: first rank, batch size.  A hash holding any long
# field name is in format 1 (no short name is a long one).
# Returns {converted, already in format 2, ids read}.
CONVERT = LuaScript(
    LIBRARY
    + """
local first, batch = tonumber(tf_arg()), tonumber(tf_arg())
local ids = redis.call('ZRANGE', tf_key('index', 'created'), first, first + batch - 1)
local manual = tf_key('index', 'source', TF_DEFAULT.source)
local converted, already = 0, 0
for _, id in ipairs(ids) do
  local key = tf_key('task', id)
  local flat = redis.call('HGETALL', key)
  local t, old = {}, false
  for i = 1, #flat, 2 do
    local name = flat[i]
    if TF_F[name] ~= nil or name == 'id' then old = true end
    t[TF_L[name] or name] = flat[i + 1]
  end
  if old then
    redis.call('DEL', key)
    tf_hset(key, tf_compact(tf_expand(t)))
    converted = converted + 1
  elseif #flat > 0 then
    already = already + 1
  end
  redis.call('ZREM', manual, id)
end
return {converted, already, #ids}
"""
)


@dataclass(frozen=True)
class Conversion:
    """What one upgrade did: task hashes rewritten, and those found in format 2 already."""

    converted: int
    already: int


async def convert_tasks(client: RedisClient, keys: KeySpace, *, batch: int = BATCH) -> Conversion:
    """Rewrite every task hash of ``keys``' deployment in format 2; safe to run again."""
    converted = already = 0
    first = 0
    while True:
        done, skipped, read = await CONVERT(
            client, keys=[keys.format_version], args=[keys.key(), first, batch]
        )
        converted += int(done)
        already += int(skipped)
        first += int(read)
        if int(read) < batch:
            break
    await client.delete(keys.by_source(DEFAULT_SOURCE))
    return Conversion(converted, already)


async def upgrade_format(repository: RedisTaskRepository, *, now: datetime) -> str:
    """Bring a format-1 deployment to this taskflow's format; returns what it did, one line.

    Raises:
        ConfigurationError: an instance sent a heartbeat within ``LIVE_WINDOW``
            and has not stopped: it could write format 1 again meanwhile.
    """
    from taskflow.repository.redis.repository import FORMAT_VERSION

    keys = repository.keys
    stored = await repository.client.get(keys.format_version)
    live = await repository.list_instances(alive_since=now - LIVE_WINDOW)
    if live:
        names = ", ".join(f"{info.hostname} pid {info.pid}" for info in live)
        raise ConfigurationError(
            f"{len(live)} instance(s) of this deployment sent a heartbeat in the last "
            f"{LIVE_WINDOW.total_seconds():g} s ({names}): stop them, then run the upgrade again"
        )
    done = await convert_tasks(repository.client, keys)
    await repository.client.set(keys.format_version, str(FORMAT_VERSION))
    return (
        f"upgraded the keys under prefix {keys.prefix!r} from format {int(stored or 0)} to "
        f"{FORMAT_VERSION}: {done.converted} task(s) converted, {done.already} already converted"
    )
