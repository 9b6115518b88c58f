"""Claims, leases and lost tasks on Redis: which instance holds a task.

This is where a mistake runs a task twice, so a claim is one Lua script:
finding the candidates, ordering them and taking them (new owner, lease and
epoch) happen in one atomic step, and two instances claiming at once never
receive the same task.  Candidates come from two indexes: the claim queue
(unowned pending tasks, per executor one sorted set per priority scored
by ``run_at``)
and the lease index (owned tasks scored by lease expiry), for tasks whose
owner's lease ran out.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from redis.commands.core import AsyncScript

from taskflow.models import TaskRecord
from taskflow.repository.redis import codec, fields, lua
from taskflow.repository.redis.connection import RedisClient
from taskflow.repository.redis.keys import KeySpace
from taskflow.repository.values import InstanceInfo

# ARGV: owner, now (µs), lease_until (µs), limit, take_expired ('1'/'0'),
# start_executor ('' for none), executors left to start (count, names).
# Returns the claimed tasks, each {id, its fields as stored, as a flat list}.
_CLAIM = """
local owner = tf_arg()
local now_text = tf_arg()
local now = tonumber(now_text)
local lease_until = tf_arg()
local limit = tonumber(tf_arg())
local take_expired = tf_arg() == '1'
local start = tf_arg()
local leave = {}
for _ = 1, tonumber(tf_arg()) do
  leave[tf_arg()] = true
end
if limit <= 0 then return {} end

local function executor_ok(executor)
  if start ~= '' then return executor == start end
  return not (executor and leave[executor])
end

local found = {}
-- Due unowned pending tasks, from the queues of the executors this claim may
-- take (each queue is one executor's, so none is walked past): per executor,
-- priorities highest first (none last), oldest due first, at most ``limit``;
-- the sort below picks the best ``limit`` of all of them.
local executors = {}
if start ~= '' then
  executors[1] = start
else
  for _, ex in ipairs(redis.call('SMEMBERS', tf_key('queue-executors'))) do
    if not leave[ex] then executors[#executors + 1] = ex end
  end
end
for _, ex in ipairs(executors) do
  local taken = 0
  for _, level in ipairs(redis.call('ZREVRANGE', tf_key('queue', ex), 0, -1)) do
    if taken >= limit then break end
    local page = redis.call('ZRANGEBYSCORE', tf_key('queue', ex, level), '-inf', now_text,
      'WITHSCORES', 'LIMIT', 0, limit - taken)
    for i = 1, #page, 2 do
      found[#found + 1] = {id = page[i], priority = tonumber(level), run_at = tonumber(page[i + 1])}
      taken = taken + 1
    end
  end
end
-- Tasks whose owner's lease expired: pending ones that are due, and running
-- ones (their instance died mid-attempt) unless this claim starts what it takes.
if take_expired then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', tf_key('leases'), '-inf', '(' .. now_text)) do
    local f = redis.call('HMGET', tf_key('task', id), $status, $owner, $run_at, $priority,
      $executor, $created_at)
    local run_at = tonumber(f[3] or f[6])
    local take = false
    if f[2] and f[2] ~= owner then
      if f[1] == 'pending' then
        take = run_at ~= nil and run_at <= now and executor_ok(f[5])
      elseif f[1] == 'running' then
        take = start == ''
      end
    end
    if take then
      found[#found + 1] = {id = id, priority = tonumber(f[4]), run_at = run_at or 0}
    end
  end
end
table.sort(found, function(a, b)
  if a.priority ~= b.priority then
    if a.priority == nil then return false end
    if b.priority == nil then return true end
    return a.priority > b.priority
  end
  if a.run_at ~= b.run_at then return a.run_at < b.run_at end
  return a.id < b.id
end)

local claimed = {}
for i = 1, math.min(limit, #found) do
  local id = found[i].id
  local old = tf_load(id)
  local sets = {
    owner = owner,
    lease_epoch = string.format('%d', tonumber(old.lease_epoch or '0') + 1),
    lease_expires_at = lease_until,
    updated_at = now_text,
  }
  local dels = {}
  if start ~= '' then
    sets.status = 'running'
    sets.started_at = now_text
    dels = {'finished_at', 'duration_ms'}
  end
  local new = tf_compact(tf_change(id, old, sets, dels))
  local flat = {}
  for name, value in pairs(new) do
    flat[#flat + 1] = name
    flat[#flat + 1] = value
  end
  claimed[#claimed + 1] = {id, flat}
end
return claimed
"""

# ARGV: instance id, heartbeat_at (µs), lease_until (µs), then the held ids.
# The instance's record is refreshed only if it exists (SQL's UPDATE).
_HEARTBEAT = """
local instance = tf_arg()
local seen = tf_arg()
local expires = tf_arg()
local record = tf_key('instance', instance)
if redis.call('EXISTS', record) == 1 then
  redis.call('HSET', record, 'heartbeat_at', seen)
  redis.call('ZADD', tf_key('instances'), seen, instance)
end
local renewed = 0
for i = tf_argi + 1, #ARGV do
  if tf_renew(ARGV[i], instance, expires) then renewed = renewed + 1 end
end
return renewed
"""


_OWNER_AND_EPOCH = [fields.STORED_BYTES["owner"], fields.STORED_BYTES["lease_epoch"]]


class RedisClaims:
    """``claim``, ``heartbeat`` and ``lost_tasks``."""

    client: RedisClient
    keys: KeySpace

    def _init_claims(self) -> None:
        self._claim_script: AsyncScript = lua.script(self.client, fields.with_fields(_CLAIM))
        self._heartbeat_script: AsyncScript = lua.script(self.client, _HEARTBEAT)

    async def claim(
        self,
        owner: str,
        *,
        now: datetime,
        lease_until: datetime,
        limit: int,
        take_expired: bool = True,
        start_executor: str | None = None,
        leave_to_start: Collection[str] = (),
    ) -> list[TaskRecord]:
        leave = sorted(leave_to_start)
        args: list[Any] = [
            owner,
            codec.to_us(now),
            codec.to_us(lease_until),
            limit,
            "1" if take_expired else "0",
            start_executor or "",
            len(leave),
            *leave,
        ]
        rows = await lua.run(self.client, self.keys, self._claim_script, args)
        return [
            codec.record_from_hash(codec.as_mapping(flat), task_id.decode("utf-8"))
            for task_id, flat in rows
        ]

    async def heartbeat(
        self, instance: InstanceInfo, *, lease_until: datetime, held: Collection[str]
    ) -> int:
        args: list[Any] = [
            instance.instance_id,
            codec.to_us(instance.heartbeat_at),
            codec.to_us(lease_until),
            *sorted(held),
        ]
        return int(await lua.run(self.client, self.keys, self._heartbeat_script, args))

    async def lost_tasks(self, owner: str, held: dict[str, int]) -> set[str]:
        if not held:
            return set()
        ids = list(held)
        # Read-only: each task's owner and epoch, compared here.
        async with self.client.pipeline(transaction=False) as pipe:
            for task_id in ids:
                pipe.hmget(self.keys.task(task_id), _OWNER_AND_EPOCH)
            replies = await pipe.execute()
        lost: set[str] = set()
        for task_id, (stored_owner, epoch) in zip(ids, replies, strict=True):
            # No stored epoch is epoch 0 (fields.DEFAULTS); no owner, a task gone.
            if stored_owner != owner.encode("utf-8") or int(epoch or 0) != held[task_id]:
                lost.add(task_id)
        return lost
