"""The Lua library every script that changes a task is built on.

A task lives in several keys (its hash, the status, function, source and
creation indexes, the claim queue, the lease index, its owner's set, the
statistics of finished tasks).  They only stay consistent if every change goes
through the same few functions, inside the script that makes it, so that
the change and its index updates are one atomic step.  ``script(body)``
prepends this library to a script's own text for a client-bound
script; ``LIBRARY + body`` works as well in a ``lua_script.LuaScript``.

Calling convention (for every script built with ``script()``):

* ``KEYS[1]`` is any key of the deployment (``keys.format_version``): it
  routes the call to the deployment's slot.  ``ARGV[1]`` is ``keys.key()``,
  the hash-tagged prefix ``{prefix}``; the library builds every other key
  from it exactly as ``KeySpace`` does.
* The script reads the rest of ``ARGV`` in order with ``tf_arg()``;
  ``tf_fields()`` reads a count then that many field/value pairs (what
  ``codec.flat_fields`` writes) into a table.

Entry points (a script that reads or writes a task hash's fields itself
names them ``$status``, ``$owner``..., which ``fields.with_fields`` turns
into the stored names):

* ``tf_load(id)``: the task's fields as a table, or nil.  Tables use the
  long field names and hold every value; the stored hash has the short
  names and leaves implied values out (``fields.py``): ``tf_load`` and
  ``tf_state`` put them back, ``tf_insert`` and ``tf_change`` leave them out.
* ``tf_state(id)``: only the fields the indexes, statistics and guards
  read (status, owner, lease_epoch, ...: no arguments or payload), or nil;
  enough as the ``old`` of ``tf_change``, and much cheaper than ``tf_load``.
* ``tf_insert(id, fields)``: store a new task with its indexes and
  statistics; false (and nothing changed) when the id exists already.
* ``tf_change(id, old, sets, dels)``: apply field changes to a task whose
  current fields are ``old`` (from ``tf_load``); reindexes and counts the
  statistics as the status moves.  Returns the new fields (as complete
  as ``old`` was).
* ``tf_delete(id)``: remove a task, its logs and every index entry, and
  uncount it from the statistics; false if it did not exist.
* ``tf_renew(id, owner, expires)``: extend the lease of an active task
  ``owner`` holds; false when it does not hold it.
* ``tf_log(id, entry_id, json)``: append a log line unless that entry id was
  appended already.
* ``tf_cancel_pending(id, now, reason)``: write a task that is still
  ``pending`` ``cancelled`` (epoch bumped); false when it is not pending.
"""

from __future__ import annotations

from typing import Any

from redis.commands.core import AsyncScript

from taskflow.repository.redis import fields
from taskflow.repository.redis.connection import RedisClient
from taskflow.repository.redis.keys import KeySpace

LIBRARY = fields.lua_tables() + fields.with_fields(r"""
local TF_P = ARGV[1]
local tf_argi = 1
local TF_ACTIVE = {pending = true, running = true}
local TF_TERMINAL = {success = true, failed = true, interrupted = true, cancelled = true}

local function tf_key(...)
  return table.concat({TF_P, ...}, ':')
end

local function tf_arg()
  tf_argi = tf_argi + 1
  return ARGV[tf_argi]
end

local function tf_fields()
  local n = tonumber(tf_arg())
  local t = {}
  for _ = 1, n do
    local name = tf_arg()
    t[name] = tf_arg()
  end
  return t
end

-- What a stored hash leaves out (fields.py), put back: Lua code sees every value.
local function tf_expand(t)
  for name, value in pairs(TF_DEFAULT) do
    if t[name] == nil then t[name] = value end
  end
  if t.run_at == nil then t.run_at = t.created_at end
  if t.updated_at == nil then t.updated_at = t.finished_at or t.created_at end
  return t
end

-- Whether the stored hash leaves ``value`` of field ``name`` of task ``t`` out.
local function tf_implied(t, name, value)
  if TF_DEFAULT[name] == value then return true end
  if name == 'run_at' then return value == t.created_at end
  if name == 'updated_at' then return value == (t.finished_at or t.created_at) end
  return name == 'id'
end

-- A task's fields (long names, every value) as they are stored: short names, implied ones out.
local function tf_compact(t)
  local s = {}
  for name, value in pairs(t) do
    if not tf_implied(t, name, value) then s[TF_F[name] or name] = value end
  end
  return s
end

local function tf_load(id)
  local flat = redis.call('HGETALL', tf_key('task', id))
  if #flat == 0 then return nil end
  local t = {}
  for i = 1, #flat, 2 do t[TF_L[flat[i]] or flat[i]] = flat[i + 1] end
  return tf_expand(t)
end

-- The fields the indexes, statistics and guards read, and every field a
-- stored hash may leave out or derive another from (so that tf_change stores
-- the right ones): no arguments or payload, which may be megabytes.  Enough as
-- the ``old`` of tf_change.
local TF_STATE_FIELDS = {'status', 'owner', 'priority', 'created_at', 'run_at',
  'lease_expires_at', 'func_name', 'duration_ms', 'source', 'lease_epoch', 'idempotency_key',
  'executor', 'attempt', 'max_retries', 'payload_format', 'updated_at', 'finished_at',
  'run_key'}
local TF_STATE_STORED = {}
for i, name in ipairs(TF_STATE_FIELDS) do TF_STATE_STORED[i] = TF_F[name] end

local function tf_state(id)
  local values = redis.call('HMGET', tf_key('task', id), unpack(TF_STATE_STORED))
  if not values[1] then return nil end
  local t = {}
  for i, name in ipairs(TF_STATE_FIELDS) do
    if values[i] then t[name] = values[i] end
  end
  return tf_expand(t)
end

-- repository/histogram.py bucket_of: 16 buckets per doubling, -1 for no duration.
local function tf_bucket(ms)
  if ms == nil or ms ~= ms or ms == math.huge or ms == -math.huge then return -1 end
  local m, e = math.frexp(ms)
  if e < -9 or m <= 0 then return 0 end
  return (e + 9) * 16 + math.floor((m - 0.5) * 32) + 1
end

-- One finished task counted (sign 1) or uncounted (sign -1), like the SQL roll-up.
local function tf_stat(func, status, duration, sign)
  local ms = tonumber(duration)
  local b = tf_bucket(ms)
  local hk = tf_key('stats', func)
  local cell = status .. '|' .. string.format('%d', b) .. '|'
  redis.call('SADD', tf_key('stats', 'functions'), func)
  local n = redis.call('HINCRBY', hk, cell .. 'n', sign)
  if b ~= -1 then
    redis.call('HINCRBYFLOAT', hk, cell .. 'sum', sign * ms)
    if sign > 0 then
      local low = tonumber(redis.call('HGET', hk, cell .. 'min'))
      if low == nil or ms < low then redis.call('HSET', hk, cell .. 'min', duration) end
      local high = tonumber(redis.call('HGET', hk, cell .. 'max'))
      if high == nil or ms > high then redis.call('HSET', hk, cell .. 'max', duration) end
    end
  end
  if n <= 0 then
    redis.call('HDEL', hk, cell .. 'n', cell .. 'sum', cell .. 'min', cell .. 'max')
  end
end

local function tf_moved(old, new)
  if old ~= nil and TF_TERMINAL[old.status] then
    tf_stat(old.func_name, old.status, old.duration_ms, -1)
  end
  if new ~= nil and TF_TERMINAL[new.status] then
    tf_stat(new.func_name, new.status, new.duration_ms, 1)
  end
end

-- The claim queue, per executor ('-' for none) so that a claim for one kind
-- never walks past another kind's backlog: one sorted set per priority
-- (score run_at), queue:<executor> holding the priorities present (score:
-- the priority; none: -inf, claimed last), and queue-executors the executors.
local function tf_unindex(id, t)
  redis.call('ZREM', tf_key('index', 'status', t.status), id)
  if t.status == 'pending' and t.owner == nil then
    local ex = t.executor or '-'
    local level = t.priority or 'none'
    local q = tf_key('queue', ex, level)
    redis.call('ZREM', q, id)
    if redis.call('ZCARD', q) == 0 then
      local levels = tf_key('queue', ex)
      redis.call('ZREM', levels, level)
      if redis.call('ZCARD', levels) == 0 then
        redis.call('SREM', tf_key('queue-executors'), ex)
      end
    end
  end
  if t.owner ~= nil and TF_ACTIVE[t.status] then
    redis.call('SREM', tf_key('owned', t.owner), id)
    redis.call('ZREM', tf_key('leases'), id)
  end
end

local function tf_index(id, t)
  redis.call('ZADD', tf_key('index', 'status', t.status), t.created_at, id)
  if t.status == 'pending' and t.owner == nil then
    local ex = t.executor or '-'
    local level = t.priority or 'none'
    redis.call('SADD', tf_key('queue-executors'), ex)
    redis.call('ZADD', tf_key('queue', ex), t.priority or '-inf', level)
    redis.call('ZADD', tf_key('queue', ex, level), t.run_at or t.created_at, id)
  end
  if t.owner ~= nil and TF_ACTIVE[t.status] then
    redis.call('SADD', tf_key('owned', t.owner), id)
    if t.lease_expires_at ~= nil then
      redis.call('ZADD', tf_key('leases'), t.lease_expires_at, id)
    end
  end
end

local function tf_hset(key, t)
  local flat = {}
  for name, value in pairs(t) do
    flat[#flat + 1] = name
    flat[#flat + 1] = value
  end
  if #flat > 0 then redis.call('HSET', key, unpack(flat)) end
end

-- Only sources other than the default have an index: most tasks are 'manual',
-- and a list of those walks the creation index (reads.py).
local function tf_source_key(t)
  if t.source == nil or t.source == TF_DEFAULT.source then return nil end
  return tf_key('index', 'source', t.source)
end

local function tf_insert(id, fields)
  local key = tf_key('task', id)
  if redis.call('EXISTS', key) == 1 then return false end
  tf_hset(key, tf_compact(fields))
  redis.call('ZADD', tf_key('index', 'created'), fields.created_at, id)
  redis.call('ZADD', tf_key('index', 'func', fields.func_name), fields.created_at, id)
  local source = tf_source_key(fields)
  if source then redis.call('ZADD', source, fields.created_at, id) end
  tf_index(id, fields)
  tf_moved(nil, fields)
  return true
end

local function tf_change(id, old, sets, dels)
  local new = {}
  for name, value in pairs(old) do new[name] = value end
  for name, value in pairs(sets) do new[name] = value end
  -- Every field asked for goes, not only those in ``old``: ``old`` may be
  -- the indexed fields only (tf_state), and an error or result left behind
  -- would outlive the attempt that wrote it.
  for _, name in ipairs(dels) do new[name] = nil end
  local key = tf_key('task', id)
  tf_unindex(id, old)
  -- Store the difference of the stored forms: a value that became implied
  -- goes (updated_at once it equals finished_at), one no longer implied comes.
  local before, after = tf_compact(old), tf_compact(new)
  local put, drop = {}, {}
  for name, value in pairs(after) do
    if before[name] ~= value then put[name] = value end
  end
  for name in pairs(before) do
    if after[name] == nil then drop[#drop + 1] = name end
  end
  for _, name in ipairs(dels) do drop[#drop + 1] = TF_F[name] or name end
  tf_hset(key, put)
  if #drop > 0 then redis.call('HDEL', key, unpack(drop)) end
  tf_index(id, new)
  tf_moved(old, new)
  return new
end

local function tf_delete(id)
  local old = tf_state(id)
  if old == nil then return false end
  tf_unindex(id, old)
  redis.call('ZREM', tf_key('index', 'created'), id)
  redis.call('ZREM', tf_key('index', 'func', old.func_name), id)
  local source = tf_source_key(old)
  if source then redis.call('ZREM', source, id) end
  tf_moved(old, nil)
  local ik = old.idempotency_key
  if ik ~= nil and redis.call('HGET', tf_key('idempotency'), ik) == id then
    redis.call('HDEL', tf_key('idempotency'), ik)
  end
  local rk = old.run_key
  if rk ~= nil and redis.call('HGET', tf_key('runkeys'), rk) == id then
    redis.call('HDEL', tf_key('runkeys'), rk)
  end
  redis.call('DEL', tf_key('task', id), tf_key('logs', id), tf_key('logids', id))
  return true
end

-- A lease renewed: only the task's expiry and its place in the lease index change.
local function tf_renew(id, owner, expires)
  local key = tf_key('task', id)
  local f = redis.call('HMGET', key, $owner, $status)
  if f[1] ~= owner or not TF_ACTIVE[f[2]] then return false end
  redis.call('HSET', key, $lease_expires_at, expires)
  redis.call('ZADD', tf_key('leases'), expires, id)
  return true
end

local function tf_log(id, entry_id, json)
  if redis.call('SADD', tf_key('logids', id), entry_id) == 1 then
    redis.call('RPUSH', tf_key('logs', id), json)
  end
end

-- A task still pending written cancelled (a one-off replaced or cancelled):
-- epoch bumped, so an instance that claimed it but has not started it cannot.
local function tf_cancel_pending(id, now, reason)
  local old = tf_state(id)
  if old == nil or old.status ~= 'pending' then return false end
  local epoch = string.format('%d', tonumber(old.lease_epoch or '0') + 1)
  tf_change(id, old, {status = 'cancelled', updated_at = now, finished_at = now,
    error = reason, lease_epoch = epoch}, {'owner', 'lease_expires_at'})
  return true
end
""")


def script(client: RedisClient, body: str) -> AsyncScript:
    """A script registered on ``client``: ``LIBRARY`` followed by ``body``."""
    return client.register_script(LIBRARY + body)


async def run(client: RedisClient, keys: KeySpace, script: AsyncScript, args: list[Any]) -> Any:
    """Run a library script: routed by the format key, the ``{prefix}`` base as ARGV[1]."""
    return await script(keys=[keys.format_version], args=[keys.key(), *args], client=client)
