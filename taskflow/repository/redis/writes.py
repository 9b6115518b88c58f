"""The write path on Redis: group commits, single transitions, keyed inserts, deletes.

Each method is one Lua script built on the library in ``lua.py``, so a
task's hash, its indexes and the statistics change in one atomic step, and a
guard (the ``lease_epoch`` fence, the expected status, the idempotency key's
holder) is checked in the same step as the write it guards.  A whole write
batch is one script call: one round trip however many tasks it carries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from redis.commands.core import AsyncScript

from taskflow.models import TaskRecord, TaskStatus, utcnow
from taskflow.repository.redis import codec, fields, lua
from taskflow.repository.redis.connection import RedisClient
from taskflow.repository.redis.keys import KeySpace
from taskflow.repository.values import BatchOutcome, WriteBatch

# ARGV after the prefix: inserts (id, fields), updates (id, epoch, sets, dels),
# log lines (task id, entry id, json), each list preceded by its length.
# An update applies only to a task still at its epoch and still active: a
# finished task at our epoch is a batch applied again, which changes nothing.
_APPLY = """
local fenced = {}
for _ = 1, tonumber(tf_arg()) do
  local id = tf_arg()
  tf_insert(id, tf_fields())
end
for _ = 1, tonumber(tf_arg()) do
  local id = tf_arg()
  local epoch = tonumber(tf_arg())
  local sets = tf_fields()
  local dels = {}
  for i = 1, tonumber(tf_arg()) do dels[i] = tf_arg() end
  local old = tf_state(id)
  if old == nil or tonumber(old.lease_epoch or '0') ~= epoch then
    fenced[#fenced + 1] = id
  elseif TF_ACTIVE[old.status] then
    tf_change(id, old, sets, dels)
  end
end
for _ = 1, tonumber(tf_arg()) do
  local id = tf_arg()
  local entry_id = tf_arg()
  tf_log(id, entry_id, tf_arg())
end
return fenced
"""

# ARGV: id, expected statuses (count, names), expected epoch ('' for any),
# new status, has_error ('1'/'0'), error, bump ('1'/'0'), now (µs).
_TRANSITION = """
local id = tf_arg()
local expected = {}
for _ = 1, tonumber(tf_arg()) do expected[tf_arg()] = true end
local epoch = tf_arg()
local status = tf_arg()
local has_error = tf_arg()
local err = tf_arg()
local bump = tf_arg()
local now = tf_arg()
local old = tf_state(id)
if old == nil or not expected[old.status] then return 0 end
if epoch ~= '' and tonumber(old.lease_epoch or '0') ~= tonumber(epoch) then return 0 end
local sets = {status = status, updated_at = now}
local dels = {}
if TF_TERMINAL[status] then
  sets.finished_at = now
  dels = {'owner', 'lease_expires_at'}
end
if has_error == '1' then sets.error = err end
if bump == '1' then
  sets.lease_epoch = string.format('%d', tonumber(old.lease_epoch or '0') + 1)
end
tf_change(id, old, sets, dels)
return 1
"""

# ARGV: idempotency key, task id, fields.  The key stays with its task
# unless that task failed or is gone (the SQL rule); then the new task takes it.
_INSERT_WITH_KEY = """
local key = tf_arg()
local id = tf_arg()
local fields = tf_fields()
local holders = tf_key('idempotency')
local holder = redis.call('HGET', holders, key)
if holder then
  local status = redis.call('HGET', tf_key('task', holder), $status)
  if status and status ~= 'failed' then return holder end
end
redis.call('HSET', holders, key, id)
tf_insert(id, fields)
return id
"""

# ARGV: a count, then that many (id, fields): returns the ids inserted.
_INSERT_MANY = """
local inserted = {}
for _ = 1, tonumber(tf_arg()) do
  local id = tf_arg()
  if tf_insert(id, tf_fields()) then inserted[#inserted + 1] = id end
end
return inserted
"""

# ARGV: task ids; returns how many existed (and are now gone).
_DELETE_MANY = """
local deleted = 0
for i = 2, #ARGV do
  if tf_delete(ARGV[i]) then deleted = deleted + 1 end
end
return deleted
"""


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def insert_args(records: Iterable[TaskRecord]) -> list[Any]:
    """(id, fields) of each record, preceded by their count: what ``tf_fields`` reads."""
    args: list[Any] = []
    count = 0
    for record in records:
        count += 1
        args.append(record.task_id)
        args.extend(codec.flat_fields(codec.insert_fields(record)))
    return [count, *args]


class RedisWrites:
    """``apply``, ``transition``, ``insert_with_key`` and the scripted insert/delete."""

    client: RedisClient
    keys: KeySpace

    def _init_writes(self) -> None:
        self._apply_script: AsyncScript = lua.script(self.client, _APPLY)
        self._transition_script: AsyncScript = lua.script(self.client, _TRANSITION)
        self._insert_key_script: AsyncScript = lua.script(
            self.client, fields.with_fields(_INSERT_WITH_KEY)
        )
        self._insert_many_script: AsyncScript = lua.script(self.client, _INSERT_MANY)
        self._delete_many_script: AsyncScript = lua.script(self.client, _DELETE_MANY)

    async def _run_library_script(self, script: AsyncScript, args: list[Any]) -> Any:
        return await lua.run(self.client, self.keys, script, args)

    async def _notice_changes(self) -> None:
        """Tell other instances' dashboards that tasks changed (``wakeups`` overrides)."""

    async def apply(self, batch: WriteBatch) -> BatchOutcome:
        args = insert_args(batch.inserts)
        args.append(len(batch.updates))
        for record in batch.updates:
            sets, dels = codec.update_fields(record)
            args.append(record.task_id)
            args.append(record.lease_epoch)
            args.extend(codec.flat_fields(sets))
            args.append(len(dels))
            args.extend(dels)
        args.append(len(batch.logs))
        for entry in batch.logs:
            args.extend((entry.task_id, entry.entry_id, codec.log_to_json(entry)))
        fenced = await self._run_library_script(self._apply_script, args)
        if batch:
            await self._notice_changes()
        return BatchOutcome(frozenset(_text(task_id) for task_id in fenced))

    async def transition(
        self,
        task_id: str,
        *,
        expected_status: Sequence[TaskStatus],
        expected_epoch: int | None,
        status: TaskStatus,
        error: str | None = None,
        bump_epoch: bool = True,
    ) -> bool:
        args: list[Any] = [task_id, len(expected_status), *(s.value for s in expected_status)]
        args += [
            "" if expected_epoch is None else expected_epoch,
            status.value,
            "0" if error is None else "1",
            error or "",
            "1" if bump_epoch else "0",
            codec.to_us(utcnow()),
        ]
        applied = bool(await self._run_library_script(self._transition_script, args))
        if applied:
            await self._notice_changes()
        return applied

    async def insert_with_key(self, record: TaskRecord) -> str:
        key = record.idempotency_key
        if key is None:
            raise ValueError("insert_with_key needs a record with an idempotency_key")
        fields = codec.flat_fields(codec.insert_fields(record))
        holder = await self._run_library_script(
            self._insert_key_script, [key, record.task_id, *fields]
        )
        return _text(holder)

    async def _insert_scripted(self, records: Sequence[TaskRecord]) -> set[str]:
        """Insert new tasks with their indexes in one atomic step; returns the ids inserted.

        For retries, schedule firings and any other insert outside ``apply``:
        a task whose id exists already is left as it is (not in the result).
        """
        if not records:
            return set()
        inserted = await self._run_library_script(self._insert_many_script, insert_args(records))
        return {_text(task_id) for task_id in inserted}

    async def _delete_scripted(self, ids: Sequence[str]) -> int:
        """Delete tasks, their logs and every index entry, uncounting their statistics.

        One atomic step for all of ``ids``; returns how many existed.  The
        caller decides which tasks may go (retention checks they are finished).
        """
        if not ids:
            return 0
        return int(await self._run_library_script(self._delete_many_script, list(ids)))
