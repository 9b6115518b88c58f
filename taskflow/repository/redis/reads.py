"""The task list on Redis: a page of ``list_tasks()`` read from the sorted-set indexes.

Redis has no query planner, so this module is one: it picks the index that
holds the fewest candidates in the created window (``created``, one
function's, one source's, or the wanted statuses' indexes, each walked and
the results merged), walks it newest first from the cursor's position, and
checks the other filters on each candidate's hash.  A page reads the
candidates up to its last row and no further, however many tasks exist;
only a search, which no index can answer (as in SQL), may check many
candidates per row it finds.  ``replay_candidates()`` (``retries.py``)
pages through failures with the same walk.

The walk is a Lua script that checks at most ``WALK_BUDGET`` candidates per
call, so a selective search never blocks the server for long: Python calls
it again from where it stopped.  Order and cursor are SQL's: ``created_at``
descending, then id descending (a sorted set orders equal scores by member
bytes), continuing strictly after the cursor's ``(created_at, id)``.

Searching is case-insensitive for ASCII letters only, as on SQLite, and
``%`` or ``_`` in the term are plain characters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from taskflow.models import TaskRecord, TaskStatus
from taskflow.repository.cursor import decode_cursor, encode_cursor
from taskflow.repository.redis import codec
from taskflow.repository.redis.connection import RedisClient
from taskflow.repository.redis.fields import DEFAULT_SOURCE, STORED_BYTES, with_fields
from taskflow.repository.redis.keys import KeySpace
from taskflow.repository.redis.lua_script import LuaScript
from taskflow.repository.redis.metrics import RedisMetrics
from taskflow.repository.values import TaskPage, TaskQuery

# Candidates one call of the walk script checks at most.
WALK_BUDGET = 2000
# Fields a page leaves out, as SQL's LIST_COLUMNS does: the biggest, shown only by get_task.
_NOT_LISTED = (STORED_BYTES["payload"], STORED_BYTES["stacktrace"])

# KEYS: task hashes.  One script, so a page is one snapshot: a MULTI/EXEC
# pipeline would be too, but not every redis-py's cluster client runs one.
HASHES = LuaScript("""
local rows = {}
for i, key in ipairs(KEYS) do rows[i] = redis.call('HGETALL', key) end
return rows
""")

# KEYS[1]: the index walked.  ARGV: task key prefix, position score and id
# ("" for the top), lowest score (inclusive), end score (exclusive, "" for
# none), rows needed, budget, "|status|...|" ("" for any), "=func" and
# "=source" ("" for any), ASCII-lowercased search term ("" for none).
# Returns {exhausted (0/1), last id, last score, id, score, id, score...}.
WALK = LuaScript(
    with_fields("""
local key = KEYS[1]
local prefix, pos_score, pos_id = ARGV[1], ARGV[2], ARGV[3]
local low = ARGV[4] == '-inf' and -math.huge or tonumber(ARGV[4])
local needed, budget = tonumber(ARGV[6]), tonumber(ARGV[7])
local statuses, func, source, term = ARGV[8], ARGV[9], ARGV[10], ARGV[11]
-- Byte order, as the sorted set orders equal scores (Lua's '>' follows the server's locale).
local function bytes_after(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a > #b
end
local start = 0
if ARGV[5] ~= '' then
  start = redis.call('ZCOUNT', key, ARGV[5], '+inf')
end
if pos_score ~= '' then
  local after
  local rank = redis.call('ZREVRANK', key, pos_id)
  local score = redis.call('ZSCORE', key, pos_id)
  if rank and tonumber(score) == tonumber(pos_score) then
    after = rank + 1
  else
    after = redis.call('ZCOUNT', key, '(' .. pos_score, '+inf')
    for _, member in ipairs(redis.call('ZRANGE', key, pos_score, pos_score, 'BYSCORE')) do
      if bytes_after(member, pos_id) then after = after + 1 end
    end
  end
  if after > start then start = after end
end
local out = {0, pos_id, pos_score}
local scanned = 0
while scanned < budget do
  local chunk = math.min(200, budget - scanned)
  local page = redis.call('ZRANGE', key, start, start + chunk - 1, 'REV', 'WITHSCORES')
  if #page == 0 then out[1] = 1 return out end
  for i = 1, #page, 2 do
    local id, score = page[i], page[i + 1]
    if tonumber(score) < low then out[1] = 1 return out end
    scanned = scanned + 1
    out[2], out[3] = id, score
    local row = redis.call('HMGET', prefix .. id, $status, $func_name, $source)
    local ok = row[1] ~= false
    if ok and statuses ~= '' then ok = string.find(statuses, '|' .. row[1] .. '|', 1, true) end
    if ok and func ~= '' then ok = ('=' .. row[2]) == func end
    if ok and source ~= '' then ok = ('=' .. (row[3] or 'manual')) == source end
    if ok and term ~= '' then
      ok = string.find(string.lower(id), term, 1, true)
        or string.find(string.lower(row[2]), term, 1, true)
    end
    if ok then
      out[#out + 1] = id
      out[#out + 1] = score
      if (#out - 3) / 2 >= needed then return out end
    end
  end
  start = start + #page / 2
end
return out
""")
)


@dataclass(frozen=True)
class Walk:
    """One index to walk and the filters its members still have to pass."""

    key: str
    statuses: str = ""
    func: str = ""
    source: str = ""


@dataclass(frozen=True)
class Window:
    """The created window and the search term, shared by every walk of one query.

    ``low`` is the lowest score (inclusive, ``-inf`` for none), ``end`` the
    score the window ends before ("" for none), ``term`` the search term
    ASCII-lowercased (b"" for none).
    """

    low: str = "-inf"
    end: str = ""
    term: bytes = b""


async def plan(
    client: RedisClient,
    keys: KeySpace,
    window: Window,
    *,
    statuses: Sequence[str] = (),
    func_name: str | None = None,
    source: str | None = None,
) -> list[Walk]:
    """The walks over the smallest index that selects these tasks (in the created window)."""
    high = "+inf" if not window.end else f"({window.end}"
    statuses = list(dict.fromkeys(statuses))
    status_filter = "|" + "|".join(statuses) + "|" if statuses else ""
    func = f"={func_name}" if func_name else ""
    source_filter = f"={source}" if source else ""
    options: list[list[Walk]] = [[Walk(keys.created, status_filter, func, source_filter)]]
    if func_name:
        options.append([Walk(keys.by_func(func_name), status_filter, "", source_filter)])
    if source and source != DEFAULT_SOURCE:
        # The default source has no index (lua.py): the others select these.
        options.append([Walk(keys.by_source(source), status_filter, func, "")])
    if statuses:
        options.append([Walk(keys.by_status(s), "", func, source_filter) for s in statuses])
    if len(options) == 1:
        return options[0]
    async with client.pipeline(transaction=False) as pipe:
        for option in options:
            for walk in option:
                pipe.zcount(walk.key, window.low, high)
        counts = iter(await pipe.execute())
    sizes = [sum(int(next(counts)) for _ in option) for option in options]
    return options[sizes.index(min(sizes))]


async def newest(
    client: RedisClient,
    keys: KeySpace,
    walks: Sequence[Walk],
    window: Window,
    position: tuple[int, str] | None,
    needed: int,
) -> list[tuple[int, bytes]]:
    """The first ``needed`` (created µs, id) after ``position`` over ``walks``, newest first."""
    found: list[tuple[int, bytes]] = []
    for walk in walks:
        found += await _walk(client, keys, walk, window, position, needed)
    found.sort(reverse=True)
    return found[:needed]


async def _walk(
    client: RedisClient,
    keys: KeySpace,
    walk: Walk,
    window: Window,
    position: tuple[int, str] | None,
    needed: int,
) -> list[tuple[int, bytes]]:
    """Up to ``needed`` (created µs, id) of ``walk``'s index after ``position`` that match."""
    pos_score: str | bytes = "" if position is None else str(position[0])
    pos_id: str | bytes = "" if position is None else position[1]
    found: list[tuple[int, bytes]] = []
    while len(found) < needed:
        reply = await WALK(
            client,
            keys=[walk.key],
            args=[
                keys.task(""),
                pos_score,
                pos_id,
                window.low,
                window.end,
                needed - len(found),
                WALK_BUDGET,
                walk.statuses,
                walk.func,
                walk.source,
                window.term,
            ],
        )
        found += [(_score(reply[i + 1]), reply[i]) for i in range(3, len(reply) - 1, 2)]
        if int(reply[0]) == 1 or reply[2] in ("", b""):
            return found
        pos_id, pos_score = reply[1], reply[2]
    return found


class RedisReads(RedisMetrics):
    """``list_tasks()`` (and, inherited, ``metrics()``) of ``RedisTaskRepository``."""

    client: RedisClient
    keys: KeySpace

    async def list_tasks(self, query: TaskQuery) -> TaskPage:
        limit = max(query.limit, 0)
        position: tuple[int, str] | None = None
        if query.cursor:
            created, last_id = decode_cursor(query.cursor)
            position = (codec.to_us(created), last_id)
        window = Window(
            low="-inf" if query.created_since is None else str(codec.to_us(query.created_since)),
            end="" if query.created_until is None else str(codec.to_us(query.created_until)),
            term=query.search.encode("utf-8").lower() if query.search else b"",
        )
        walks = await plan(
            self.client,
            self.keys,
            window,
            statuses=[TaskStatus(s).value for s in query.status or ()],
            func_name=query.func_name,
            source=query.source,
        )
        found = await newest(self.client, self.keys, walks, window, position, limit + 1)
        records = await self._listed([task_id for _, task_id in found])
        items = records[:limit]
        next_cursor = None
        if len(found) > limit and items:
            last = items[-1]
            next_cursor = encode_cursor(last.created_at, last.task_id)
        return TaskPage(items=items, next_cursor=next_cursor)

    async def _listed(self, task_ids: Sequence[bytes]) -> list[TaskRecord]:
        """The tasks of a page in that order, without payload and stack trace."""
        if not task_ids:
            return []
        ids = [task_id.decode("utf-8") for task_id in task_ids]
        keys = [self.keys.task(task_id) for task_id in ids]
        rows = [codec.as_mapping(flat) for flat in await HASHES(self.client, keys=keys, args=[])]
        records = []
        for task_id, row in zip(ids, rows, strict=True):
            if not row:
                continue  # deleted since the walk saw it
            for name in _NOT_LISTED:
                row.pop(name, None)
            records.append(codec.record_from_hash(row, task_id))
        return records


def _score(raw: bytes | str) -> int:
    """A sorted-set score as Lua returns it (text), as integer microseconds."""
    return int(float(raw))
