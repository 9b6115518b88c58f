"""Copying failed tasks into new pending ones on Redis: retry, bulk retry and replay.

As in SQL (``repository/sql/retries.py``), the store copies the original:
one Lua script reads each original's hash and inserts the copy through the
Lua library (``lua.py``'s ``tf_insert``, which keeps every index and
statistic), so the stored arguments (JSON, pickled or encrypted payload)
never travel through Python, and an original deleted or no longer
failed/interrupted in the meantime simply yields no copy.  The copies have
no owner: every instance's dispatcher claims them like any pending task.

``retried_ids()`` needs the reverse of ``retried_from``, an index SQL has:
here the ``retry-counts`` hash (original id -> how many stored tasks are a
retry of it), kept by the copying script and by retention's deletions.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from taskflow.models import TaskStatus
from taskflow.repository.redis import codec
from taskflow.repository.redis.connection import RedisClient
from taskflow.repository.redis.fields import DEFAULTS, STORED_BYTES
from taskflow.repository.redis.keys import KeySpace
from taskflow.repository.redis.lua import LIBRARY
from taskflow.repository.redis.lua_script import LuaScript
from taskflow.repository.redis.reads import Window, newest, plan
from taskflow.repository.values import ReplayPage, RetryCopy, RetrySource

#: The hash of retry counts per original task (see the module docstring).
RETRY_COUNTS = "retry-counts"
# Copied from the original as stored; everything else starts afresh.
COPIED = (
    "func_name",
    "executor",
    "priority",
    "tags",
    "args",
    "kwargs",
    "payload",
    "payload_format",
)
SOURCE_FIELDS = [
    STORED_BYTES[name]
    for name in ("func_name", "status", "payload_format", "created_at", "retried_from")
]

# ARGV after the prefix: now, then (original id, new id, max_retries) triples.
# Returns the new ids inserted.  The copied fields are ``COPIED``; the counts
# hash is ``RETRY_COUNTS``.
COPY = LuaScript(
    LIBRARY
    + """
local now = tf_arg()
local copied = {'func_name', 'executor', 'priority', 'tags', 'args', 'kwargs', 'payload',
  'payload_format'}
local counts = tf_key('retry-counts')
local inserted = {}
for _ = 1, (#ARGV - 2) / 3 do
  local original, id, max_retries = tf_arg(), tf_arg(), tf_arg()
  local old = tf_load(original)
  if old ~= nil and (old.status == 'failed' or old.status == 'interrupted') then
    local fields = {}
    for _, name in ipairs(copied) do fields[name] = old[name] end
    fields.status = 'pending'
    fields.source = 'retry'
    fields.max_retries = max_retries
    fields.attempt = '0'
    fields.lease_epoch = '0'
    fields.run_at, fields.created_at, fields.updated_at = now, now, now
    fields.retried_from = original
    if tf_insert(id, fields) then
      redis.call('HINCRBY', counts, original, 1)
      inserted[#inserted + 1] = id
    end
  end
end
return inserted
"""
)


def _source(task_id: str | bytes, values: Sequence[bytes | None]) -> RetrySource | None:
    """A ``RetrySource`` from the HMGET of ``SOURCE_FIELDS``; None for a missing task."""
    func_name, status, payload_format, created_at, retried_from = values
    if func_name is None or status is None or created_at is None:
        return None
    return RetrySource(
        task_id=task_id.decode("utf-8") if isinstance(task_id, bytes) else task_id,
        func_name=func_name.decode("utf-8"),
        status=TaskStatus(status.decode("utf-8")),
        payload_format=(payload_format or DEFAULTS["payload_format"].encode()).decode("utf-8"),
        created_at=codec.from_us(created_at),
        retried_from=None if retried_from is None else retried_from.decode("utf-8"),
    )


def _sources(ids: Sequence[str | bytes], rows: Sequence[Any]) -> list[RetrySource]:
    """The ``RetrySource`` of each task that still exists, from the HMGETs of ``ids``."""
    found = (_source(task_id, row) for task_id, row in zip(ids, rows, strict=True))
    return [source for source in found if source is not None]


class RedisRetries:
    """The retry methods of ``RedisTaskRepository`` (``TaskRepository``'s retries)."""

    client: RedisClient
    keys: KeySpace

    async def _hmget_all(
        self, task_ids: Sequence[str | bytes], fields: Sequence[bytes]
    ) -> list[Any]:
        """HMGET of ``fields`` for each task, in one round trip."""
        async with self.client.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                text = task_id.decode("utf-8") if isinstance(task_id, bytes) else task_id
                pipe.hmget(self.keys.task(text), list(fields))
            return list(await pipe.execute())

    async def retry_sources(self, task_ids: Sequence[str]) -> list[RetrySource]:
        ids = list(dict.fromkeys(task_ids))
        rows = await self._hmget_all(ids, SOURCE_FIELDS)
        return _sources(ids, rows)

    async def replay_candidates(self, page: ReplayPage) -> list[RetrySource]:
        window = Window(
            low="-inf" if page.created_since is None else str(codec.to_us(page.created_since)),
            end=str(codec.to_us(page.created_before)),
        )
        walks = await plan(
            self.client,
            self.keys,
            window,
            statuses=[page.status.value],
            func_name=page.func_name,
        )
        after = page.after
        position = None if after is None else (codec.to_us(after.created_at), after.task_id)
        found = await newest(self.client, self.keys, walks, window, position, page.limit)
        ids = [task_id for _, task_id in found]
        rows = await self._hmget_all(ids, SOURCE_FIELDS)
        return _sources(ids, rows)

    async def retried_ids(self, task_ids: Sequence[str]) -> set[str]:
        ids = list(dict.fromkeys(task_ids))
        if not ids:
            return set()
        counts = await self.client.hmget(self.keys.key(RETRY_COUNTS), ids)
        return {task_id for task_id, n in zip(ids, counts, strict=True) if n and int(n) > 0}

    async def retry_origins(self, task_ids: Sequence[str]) -> dict[str, str | None]:
        ids = list(dict.fromkeys(task_ids))
        rows = await self._hmget_all(ids, (STORED_BYTES["status"], STORED_BYTES["retried_from"]))
        return {
            task_id: None if origin is None else origin.decode("utf-8")
            for task_id, (exists, origin) in zip(ids, rows, strict=True)
            if exists is not None
        }

    async def insert_retries(
        self, copies: Sequence[RetryCopy], *, now: datetime
    ) -> list[RetryCopy]:
        if not copies:
            return []
        args: list[Any] = [self.keys.key(), codec.to_us(now)]
        for copy in copies:
            args += [copy.original_id, copy.new_task_id, copy.max_retries]
        inserted = await COPY(self.client, keys=[self.keys.format_version], args=args)
        new_ids = {task_id.decode("utf-8") for task_id in inserted}
        return [copy for copy in copies if copy.new_task_id in new_ids]
