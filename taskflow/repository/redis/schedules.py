"""Schedules on Redis, and the script that decides which instance fires a slot.

Exactly once per slot, on any number of instances, as in SQL
(``repository/sql/schedules.py``), but in one Lua script instead of one
transaction:

1. Compare-and-swap on the schedule's hash: the script fires only if
   ``next_run_at`` is still the slot and the schedule is not paused, and
   moves ``next_run_at`` on.  Scripts run one at a time, so of racing
   instances exactly one finds the slot still there.
2. In the same script the task is inserted through the Lua library
   (``lua.py``'s ``tf_insert``, which keeps every index and statistic), and
   ``(schedule_name, scheduled_for) -> task id`` is recorded in the
   ``schedule-slots`` hash: the unique index SQL has, a second guard that
   holds even when ``next_run_at`` is rewound to a slot that fired already.
   An entry whose task was deleted since (retention) no longer counts.

Keys: ``schedule:{name}`` (a hash of the SQL row's columns; times in
microseconds, ``paused`` as 1/0) and ``schedules`` (the set of names).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from taskflow.models import TaskRecord
from taskflow.repository.redis import codec
from taskflow.repository.redis.connection import RedisClient
from taskflow.repository.redis.fields import with_fields
from taskflow.repository.redis.keys import KeySpace
from taskflow.repository.redis.lua import LIBRARY
from taskflow.repository.redis.lua_script import LuaScript
from taskflow.schedules import FireOutcome, ScheduleDefinition, ScheduleState

# Shared by the scripts below: a schedule's hash key, and its fields as a table.
_COMMON = """
local function sched_key(name) return tf_key('schedule', name) end
local function sched_load(name)
  local flat = redis.call('HGETALL', sched_key(name))
  if #flat == 0 then return nil end
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end
"""

# ARGV after the prefix: name, trigger, every_seconds, cron, timezone ('' for
# none), first run, now, fired-since ('' for none).  Returns the hash, flat.
SYNC = LuaScript(
    LIBRARY
    + _COMMON
    + """
local name, trigger, every, cron, tz = tf_arg(), tf_arg(), tf_arg(), tf_arg(), tf_arg()
local first, now, fired_since = tf_arg(), tf_arg(), tf_arg()
local key = sched_key(name)
local s = sched_load(name)
if s == nil then
  redis.call('HSET', key, 'name', name, 'trigger', trigger, 'timezone', tz,
    'next_run_at', first, 'paused', '0', 'updated_at', now)
  if every ~= '' then redis.call('HSET', key, 'every_seconds', every) end
  if cron ~= '' then redis.call('HSET', key, 'cron', cron) end
  redis.call('SADD', tf_key('schedules'), name)
  s = sched_load(name)
end
local changed = (s.every_seconds or '') ~= every or (s.cron or '') ~= cron or s.timezone ~= tz
local sets = nil
if changed or s.next_run_at == nil then
  -- A new trigger: the old next run belongs to the old one.  Paused stays.
  sets = {'trigger', trigger, 'timezone', tz, 'next_run_at', first}
  redis.call('HDEL', key, 'every_seconds', 'cron')
  if every ~= '' then redis.call('HSET', key, 'every_seconds', every) end
  if cron ~= '' then redis.call('HSET', key, 'cron', cron) end
elseif s.trigger ~= trigger then
  sets = {'trigger', trigger}
elseif fired_since ~= '' and s.paused ~= '1' and tonumber(s.next_run_at) > tonumber(now)
    and (s.last_run_at == nil or tonumber(s.last_run_at) < tonumber(fired_since)) then
  -- run_on_startup: run now, unless another instance fired it since.
  sets = {'next_run_at', now}
end
if sets ~= nil then
  sets[#sets + 1] = 'updated_at'
  sets[#sets + 1] = now
  redis.call('HSET', key, unpack(sets))
end
return redis.call('HGETALL', key)
"""
)

# ARGV after the prefix: name, slot, next run, now, slot field, task id, fields.
FIRE = LuaScript(
    LIBRARY
    + _COMMON
    + """
local name, slot, next_run, now = tf_arg(), tf_arg(), tf_arg(), tf_arg()
local slot_field, id = tf_arg(), tf_arg()
local fields = tf_fields()
local key = sched_key(name)
local s = redis.call('HMGET', key, 'next_run_at', 'paused')
if not s[1] or tonumber(s[1]) ~= tonumber(slot) or s[2] == '1' then return 'lost' end
redis.call('HSET', key, 'next_run_at', next_run, 'last_run_at', slot,
  'last_task_id', id, 'updated_at', now)
local slots = tf_key('schedule-slots')
local existing = redis.call('HGET', slots, slot_field)
if existing and redis.call('EXISTS', tf_key('task', existing)) == 1 then
  -- The slot fired already (next_run_at was moved back): keep the advance.
  redis.call('HSET', key, 'last_task_id', existing)
  return 'duplicate'
end
if not tf_insert(id, fields) then return 'duplicate' end
redis.call('HSET', slots, slot_field, id)
return 'fired'
"""
)

# ARGV after the prefix: name, paused (1/0), resume at ('' for none), now.
SET_PAUSED = LuaScript(
    LIBRARY
    + _COMMON
    + """
local name, paused, resume_at, now = tf_arg(), tf_arg(), tf_arg(), tf_arg()
local s = sched_load(name)
if s == nil then return 0 end
local key = sched_key(name)
redis.call('HSET', key, 'paused', paused, 'updated_at', now)
local missed = s.next_run_at == nil or tonumber(s.next_run_at) < tonumber(now)
if paused == '0' and resume_at ~= '' and missed then
  redis.call('HSET', key, 'next_run_at', resume_at)
end
return 1
"""
)

# ARGV after the prefix: names (none: every schedule).  Returns {{hash, last status}...}.
READ = LuaScript(
    LIBRARY
    + _COMMON
    + with_fields("""
local names = {}
for i = 2, #ARGV do names[#names + 1] = ARGV[i] end
if #names == 0 then names = redis.call('SMEMBERS', tf_key('schedules')) end
local out = {}
for _, name in ipairs(names) do
  local flat = redis.call('HGETALL', sched_key(name))
  if #flat > 0 then
    local last = redis.call('HGET', sched_key(name), 'last_task_id')
    local status = false
    if last then status = redis.call('HGET', tf_key('task', last), $status) end
    out[#out + 1] = {flat, status}
  end
end
return out
""")
)


def slot_field(name: str, slot: datetime) -> str:
    """The ``schedule-slots`` field of a slot: the name, then the slot's microseconds."""
    return f"{name}|{codec.to_us(slot)}"


def state_from_hash(row: Mapping[bytes, bytes], last_status: bytes | None) -> ScheduleState:
    """A ``ScheduleState`` from a schedule's hash and the status of its last task."""
    get = row.get
    every = get(b"every_seconds")
    cron = get(b"cron")
    last_task = get(b"last_task_id")
    return ScheduleState(
        name=row[b"name"].decode("utf-8"),
        trigger=row[b"trigger"].decode("utf-8"),
        every_seconds=None if every is None else float(every),
        cron=None if cron is None else cron.decode("utf-8"),
        timezone=row[b"timezone"].decode("utf-8"),
        next_run_at=_when(get(b"next_run_at")),
        last_run_at=_when(get(b"last_run_at")),
        last_task_id=None if last_task is None else last_task.decode("utf-8"),
        paused=get(b"paused") == b"1",
        updated_at=codec.from_us(row[b"updated_at"]),
        last_status=None if last_status is None else last_status.decode("utf-8"),
    )


def _when(value: bytes | None) -> datetime | None:
    return None if value is None else codec.from_us(value)


def _flat(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[0::2], flat[1::2], strict=True))


class RedisSchedules:
    """The schedule methods of ``RedisTaskRepository`` (``TaskRepository``'s schedules)."""

    client: RedisClient
    keys: KeySpace

    async def _schedule_script(self, script: LuaScript, *args: Any) -> Any:
        """Run a library script: routed by the format key, the prefix as ARGV[1]."""
        return await script(
            self.client, keys=[self.keys.format_version], args=[self.keys.key(), *args]
        )

    async def sync_schedule(
        self,
        definition: ScheduleDefinition,
        *,
        first_run_at: datetime,
        now: datetime,
        run_now_unless_fired_since: datetime | None = None,
    ) -> ScheduleState:
        fired_since = run_now_unless_fired_since
        flat = await self._schedule_script(
            SYNC,
            definition.name,
            definition.trigger,
            "" if definition.every_seconds is None else repr(float(definition.every_seconds)),
            definition.cron or "",
            definition.timezone,
            codec.to_us(first_run_at),
            codec.to_us(now),
            "" if fired_since is None else codec.to_us(fired_since),
        )
        # As SQL's: the row itself, without the status of its last task.
        return state_from_hash(_flat(flat), None)

    async def fire_schedule(
        self,
        name: str,
        *,
        slot: datetime,
        next_run_at: datetime,
        record: TaskRecord,
        now: datetime,
    ) -> FireOutcome:
        # The unique slot is the record's own (schedule_name, scheduled_for), as in SQL.
        field = slot_field(record.schedule_name or name, record.scheduled_for or slot)
        outcome = await self._schedule_script(
            FIRE,
            name,
            codec.to_us(slot),
            codec.to_us(next_run_at),
            codec.to_us(now),
            field,
            record.task_id,
            *codec.flat_fields(codec.insert_fields(record)),
        )
        return FireOutcome(outcome.decode("utf-8"))

    async def _read_schedules(self, *names: str) -> list[ScheduleState]:
        reply = await self._schedule_script(READ, *names)
        return [state_from_hash(_flat(flat), status or None) for flat, status in reply]

    async def get_schedule(self, name: str) -> ScheduleState | None:
        found = await self._read_schedules(name)
        return found[0] if found else None

    async def list_schedules(self) -> list[ScheduleState]:
        return sorted(await self._read_schedules(), key=lambda state: state.name)

    async def set_schedule_paused(
        self, name: str, paused: bool, *, resume_at: datetime | None, now: datetime
    ) -> ScheduleState | None:
        found = await self._schedule_script(
            SET_PAUSED,
            name,
            "1" if paused else "0",
            "" if resume_at is None else codec.to_us(resume_at),
            codec.to_us(now),
        )
        return await self.get_schedule(name) if found else None
