"""``metrics()`` on Redis: the statistics hashes of finished tasks plus live active counts.

The numbers must be SQL's (``repository/sql/metrics_query.py``), from the
same kind of roll-up: the Lua library (``lua.py``) counts every task that
becomes finished, and uncounts every one that is deleted or moves on, in
``stats:{func}`` hashes of per (status, duration bucket) cells.  Pending and
running tasks are not rolled up; they are counted per function here by
reading the function of each active task, as SQL counts them through its
index of active rows.  One script reads both, so the numbers are one
snapshot.
"""

from __future__ import annotations

from typing import Any

from taskflow.models import TaskMetrics
from taskflow.repository.metrics_fold import TIMED, Tallies, as_float, task_metrics
from taskflow.repository.redis.connection import RedisClient
from taskflow.repository.redis.fields import with_fields
from taskflow.repository.redis.keys import KeySpace
from taskflow.repository.redis.lua_script import LuaScript

# KEYS[1]: any key of the deployment.  ARGV[1]: the ``{prefix}`` base.
# Returns {{func, {hash field, value...}}...} and {{func, status, count}...}.
READ = LuaScript(
    with_fields("""
local p = ARGV[1]
local stats = {}
for _, func in ipairs(redis.call('SMEMBERS', p .. ':stats:functions')) do
  stats[#stats + 1] = {func, redis.call('HGETALL', p .. ':stats:' .. func)}
end
local live = {}
for _, status in ipairs({'pending', 'running'}) do
  local counts = {}
  for _, id in ipairs(redis.call('ZRANGE', p .. ':index:status:' .. status, 0, -1)) do
    local func = redis.call('HGET', p .. ':task:' .. id, $func_name)
    if func then counts[func] = (counts[func] or 0) + 1 end
  end
  for func, n in pairs(counts) do live[#live + 1] = {func, status, n} end
end
return {stats, live}
""")
)


def _cells(flat: list[bytes]) -> dict[tuple[str, int], dict[str, bytes]]:
    """A statistics hash (HGETALL as a flat list) as (status, bucket) -> {n, sum, min, max}."""
    cells: dict[tuple[str, int], dict[str, bytes]] = {}
    for name, value in zip(flat[0::2], flat[1::2], strict=True):
        status, bucket, part = name.decode("utf-8").split("|")
        cells.setdefault((status, int(bucket)), {})[part] = value
    return cells


def metrics_from_reply(reply: list[Any]) -> TaskMetrics:
    """Fold the ``READ`` script's reply into ``TaskMetrics``, as SQL folds its rows."""
    stats, live = reply
    tallies = Tallies()
    for raw_name, flat in stats:
        tally = tallies[raw_name.decode("utf-8")]
        for (status, bucket), parts in _cells(flat).items():
            n = int(parts.get("n", 0))
            tally.count(status, n)
            if status not in TIMED or bucket < 0 or n <= 0:
                continue
            low, high = as_float(parts.get("min")), as_float(parts.get("max"))
            tally.timed(n, float(parts.get("sum", 0)), low, high)
            tally.bucket(bucket, n, low, high)
    for raw_name, status, n in live:
        tallies[raw_name.decode("utf-8")].count(status.decode("utf-8"), int(n))
    return task_metrics(tallies.values())


class RedisMetrics:
    """``metrics()`` of ``RedisTaskRepository``."""

    client: RedisClient
    keys: KeySpace

    async def metrics(self) -> TaskMetrics:
        reply = await READ(self.client, keys=[self.keys.format_version], args=[self.keys.key()])
        return metrics_from_reply(reply)
