"""Deleting finished history on Redis: terminal tasks that finished before a cutoff.

There is no index by ``finished_at``; a task finishes after it is created,
so every task that finished before the cutoff was created before it, and
the status indexes (scored by ``created_at``) of the four terminal statuses
bound the search: a purge reads the old end of each, oldest first, and
deletes those that finished before the cutoff.  The few created before the
cutoff but finished after it are skipped (and counted, so the next batch
starts past them).  A task whose clock-skewed ``finished_at`` lies before
its own ``created_at`` near the cutoff waits for a later purge, whose cutoff
is later too.

Each batch is one Lua script: the check (still terminal, finished before
the cutoff) and the deletion (``lua.py``'s ``tf_delete``: hash, logs, every
index entry, idempotency key, statistics) are one atomic step, so a task
that was retried or changed meanwhile is never deleted by mistake, and a
short script keeps a large purge from holding up the writers.  The same
script drops what this backend's own indexes say about the task: its
schedule slot and its place in the retry counts (``schedules.py``,
``retries.py``).
"""

from __future__ import annotations

from datetime import datetime

from taskflow.models import TERMINAL_STATUSES
from taskflow.repository.redis import codec
from taskflow.repository.redis.connection import RedisClient
from taskflow.repository.redis.keys import KeySpace
from taskflow.repository.redis.lua import LIBRARY
from taskflow.repository.redis.lua_script import LuaScript

TERMINAL = sorted(status.value for status in TERMINAL_STATUSES)
# Candidates one batch checks at most, besides the ones it deletes.
SCAN_BUDGET = 2000

# ARGV after the prefix: status, cutoff (µs), offset, batch, budget.
# Returns {deleted, skipped, exhausted (0/1)}.  The keys 'retry-counts' and
# 'schedule-slots' are retries.RETRY_COUNTS and schedules' slot index.
PURGE = LuaScript(
    LIBRARY
    + """
local status, cutoff_text = tf_arg(), tf_arg()
local cutoff = tonumber(cutoff_text)
local offset, batch, budget = tonumber(tf_arg()), tonumber(tf_arg()), tonumber(tf_arg())
local ids = redis.call('ZRANGE', tf_key('index', 'status', status), '-inf',
  '(' .. cutoff_text, 'BYSCORE', 'LIMIT', offset, batch + budget)
local deleted, skipped = 0, 0
for _, id in ipairs(ids) do
  if deleted >= batch then return {deleted, skipped, 0} end
  local t = tf_load(id)
  if t ~= nil and t.status == status and t.finished_at ~= nil
      and tonumber(t.finished_at) < cutoff then
    if t.retried_from ~= nil then
      local counts = tf_key('retry-counts')
      if redis.call('HINCRBY', counts, t.retried_from, -1) <= 0 then
        redis.call('HDEL', counts, t.retried_from)
      end
    end
    if t.schedule_name ~= nil and t.scheduled_for ~= nil then
      local slots = tf_key('schedule-slots')
      local field = t.schedule_name .. '|' .. t.scheduled_for
      if redis.call('HGET', slots, field) == id then redis.call('HDEL', slots, field) end
    end
    tf_delete(id)
    deleted = deleted + 1
  else
    skipped = skipped + 1
  end
end
if #ids < batch + budget then return {deleted, skipped, 1} end
return {deleted, skipped, 0}
"""
)


class RedisRetention:
    """``delete_finished_before()`` of ``RedisTaskRepository``."""

    client: RedisClient
    keys: KeySpace

    async def delete_finished_before(self, cutoff: datetime, *, batch: int = 1000) -> int:
        batch = max(batch, 1)
        limit = codec.to_us(cutoff)
        deleted = 0
        for status in TERMINAL:
            offset = 0
            while True:
                done, skipped, exhausted = await PURGE(
                    self.client,
                    keys=[self.keys.format_version],
                    args=[self.keys.key(), status, limit, offset, batch, SCAN_BUDGET],
                )
                deleted += int(done)
                offset += int(skipped)
                if int(exhausted):
                    break
        return deleted
