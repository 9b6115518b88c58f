"""Run keys on Redis: arming, replacing and cancelling ``schedule_once()`` tasks.

The ``runkeys`` hash maps each run key to the task it armed last.  Arming is
one script: the task the key named is cancelled if still pending, the new
task inserted (into the claim queue, scored by its ``run_at``) and the key
moved, as one atomic step, so instances racing on a key leave one armed.
The idempotency-key rule is the SQL one (``repository/sql/one_off``).
"""

from __future__ import annotations

import json
from datetime import datetime

from redis.commands.core import AsyncScript

from taskflow.models import ScheduledOnce, TaskRecord
from taskflow.repository.one_off import CANCELLED, REPLACED
from taskflow.repository.redis import codec, lua
from taskflow.repository.redis.connection import RedisClient
from taskflow.repository.redis.fields import with_fields
from taskflow.repository.redis.keys import KeySpace

# ARGV: run key, now (µs), reason, idempotency key ('' for none), id, fields.
# Returns the id of the task armed, or of the live task holding the
# idempotency key (and then nothing changed).
_ARM = with_fields("""
local run_key = tf_arg()
local now = tf_arg()
local reason = tf_arg()
local ikey = tf_arg()
local id = tf_arg()
local fields = tf_fields()
local holders = tf_key('idempotency')
local old = redis.call('HGET', tf_key('runkeys'), run_key)
if ikey ~= '' then
  local holder = redis.call('HGET', holders, ikey)
  if holder and holder ~= old then
    local status = redis.call('HGET', tf_key('task', holder), $status)
    if status and status ~= 'failed' then return holder end
  end
  if holder and holder == old then
    local status = redis.call('HGET', tf_key('task', holder), $status)
    if status and status ~= 'pending' and status ~= 'failed' then return holder end
  end
end
if old then tf_cancel_pending(old, now, reason) end
if ikey ~= '' then redis.call('HSET', holders, ikey, id) end
redis.call('HSET', tf_key('runkeys'), run_key, id)
tf_insert(id, fields)
-- Retention, deleting the task, forgets the key with it (tf_delete).
redis.call('HSET', tf_key('task', id), $run_key, run_key)
return id
""")

# ARGV: run key, now (µs), reason.  Returns 1 when a pending task was cancelled.
_CANCEL = """
local run_key = tf_arg()
local now = tf_arg()
local reason = tf_arg()
local id = redis.call('HGET', tf_key('runkeys'), run_key)
if not id then return 0 end
redis.call('HDEL', tf_key('runkeys'), run_key)
if tf_cancel_pending(id, now, reason) then return 1 end
return 0
"""

# ARGV: before (µs, '' for none).  Returns, per pending armed task: run key,
# id, func_name, run_at, priority ('' for none), tags ('' for none).
_LIST = with_fields("""
local before = tf_arg()
local limit = before ~= '' and tonumber(before) or nil
local out = {}
local flat = redis.call('HGETALL', tf_key('runkeys'))
for i = 1, #flat, 2 do
  local id = flat[i + 1]
  local f = redis.call('HMGET', tf_key('task', id), $status, $func_name, $run_at,
    $priority, $tags, $created_at)
  -- A run_at equal to created_at is not stored (fields.py).
  local run_at = f[3] or f[6]
  if f[1] == 'pending' and (limit == nil or tonumber(run_at) < limit) then
    for _, value in ipairs({flat[i], id, f[2], run_at, f[4] or '', f[5] or ''}) do
      out[#out + 1] = value
    end
  end
end
return out
""")


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


class RedisOneOffs:
    """The run-key methods of ``RedisTaskRepository`` (``OneOffRecords``)."""

    client: RedisClient
    keys: KeySpace

    def _init_one_offs(self) -> None:
        self._arm_script: AsyncScript = lua.script(self.client, _ARM)
        self._cancel_once_script: AsyncScript = lua.script(self.client, _CANCEL)
        self._list_once_script: AsyncScript = lua.script(self.client, _LIST)

    async def arm_once(self, run_key: str, record: TaskRecord, *, now: datetime) -> str:
        fields = codec.flat_fields(codec.insert_fields(record))
        args = [run_key, codec.to_us(now), REPLACED, record.idempotency_key or ""]
        armed = await lua.run(
            self.client, self.keys, self._arm_script, [*args, record.task_id, *fields]
        )
        return _text(armed)

    async def cancel_once(self, run_key: str, *, now: datetime) -> bool:
        args = [run_key, codec.to_us(now), CANCELLED]
        return bool(await lua.run(self.client, self.keys, self._cancel_once_script, args))

    async def list_once(self, *, before: datetime | None = None) -> list[ScheduledOnce]:
        bound = "" if before is None else codec.to_us(before)
        flat = await lua.run(self.client, self.keys, self._list_once_script, [bound])
        found: list[ScheduledOnce] = []
        for i in range(0, len(flat), 6):
            run_key, task_id, func_name, run_at, priority, tags = flat[i : i + 6]
            found.append(
                ScheduledOnce(
                    run_key=_text(run_key),
                    task_id=_text(task_id),
                    func_name=_text(func_name),
                    fire_at=codec.from_us(run_at),
                    priority=int(priority) if priority else None,
                    tags={str(k): str(v) for k, v in json.loads(tags or b"{}").items()},
                )
            )
        found.sort(key=lambda entry: (entry.fire_at, entry.run_key))
        return found
