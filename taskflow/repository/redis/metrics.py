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

from taskflow.models import FunctionMetrics, TaskMetrics, TaskStatus
from taskflow.repository.histogram import percentile
from taskflow.repository.redis.connection import RedisClient
from taskflow.repository.redis.keys import KeySpace
from taskflow.repository.redis.lua_script import LuaScript

# Finished runs whose durations the metrics describe (SQL's stats.TIMED).
TIMED = (TaskStatus.SUCCESS.value, TaskStatus.FAILED.value)

# KEYS[1]: any key of the deployment.  ARGV[1]: the ``{prefix}`` base.
# Returns {{func, {hash field, value...}}...} and {{func, status, count}...}.
READ = LuaScript(
    """
local p = ARGV[1]
local stats = {}
for _, func in ipairs(redis.call('SMEMBERS', p .. ':stats:functions')) do
  stats[#stats + 1] = {func, redis.call('HGETALL', p .. ':stats:' .. func)}
end
local live = {}
for _, status in ipairs({'pending', 'running'}) do
  local counts = {}
  for _, id in ipairs(redis.call('ZRANGE', p .. ':index:status:' .. status, 0, -1)) do
    local func = redis.call('HGET', p .. ':task:' .. id, 'func_name')
    if func then counts[func] = (counts[func] or 0) + 1 end
  end
  for func, n in pairs(counts) do live[#live + 1] = {func, status, n} end
end
return {stats, live}
"""
)


class _Function:
    """One function's numbers while the reply is folded (SQL's ``metrics_query._Function``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts: dict[str, int] = {}
        self.timed_count = 0
        self.timed_sum = 0.0
        self.low: float | None = None
        self.high: float | None = None
        # bucket -> [count, min, max] over the timed statuses, for p95.
        self.histogram: dict[int, list[Any]] = {}

    def cell(self, status: str, bucket: int, n: int, ms: float, lo: Any, hi: Any) -> None:
        """One (status, bucket) cell of the statistics hash."""
        self.counts[status] = self.counts.get(status, 0) + n
        if status not in TIMED or bucket < 0 or n <= 0:
            return
        low, high = _float(lo), _float(hi)
        self.timed_count += n
        self.timed_sum += ms
        if low is not None:
            self.low = low if self.low is None else min(self.low, low)
        if high is not None:
            self.high = high if self.high is None else max(self.high, high)
        entry = self.histogram.setdefault(bucket, [0, None, None])
        entry[0] += n
        if low is not None:
            entry[1] = low if entry[1] is None else min(entry[1], low)
        if high is not None:
            entry[2] = high if entry[2] is None else max(entry[2], high)

    def result(self) -> FunctionMetrics:
        avg = self.timed_sum / self.timed_count if self.timed_count else None
        return FunctionMetrics(
            func_name=self.name,
            total=sum(self.counts.values()),
            success=self.counts.get(TaskStatus.SUCCESS.value, 0),
            failed=self.counts.get(TaskStatus.FAILED.value, 0),
            running=self.counts.get(TaskStatus.RUNNING.value, 0),
            avg_duration=_seconds(avg),
            min_duration=_seconds(self.low),
            max_duration=_seconds(self.high),
            p95_duration=_seconds(percentile(sorted(self.histogram.items()), 95)),
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
    functions: dict[str, _Function] = {}

    def function(raw: bytes) -> _Function:
        name = raw.decode("utf-8")
        fn = functions.get(name)
        if fn is None:
            fn = functions[name] = _Function(name)
        return fn

    for raw_name, flat in stats:
        fn = function(raw_name)
        for (status, bucket), parts in _cells(flat).items():
            n = int(parts.get("n", 0))
            fn.cell(
                status, bucket, n, float(parts.get("sum", 0)), parts.get("min"), parts.get("max")
            )
    for raw_name, status, n in live:
        fn = function(raw_name)
        key = status.decode("utf-8")
        fn.counts[key] = fn.counts.get(key, 0) + int(n)
    counts: dict[str, int] = {}
    for fn in functions.values():
        for status, n in fn.counts.items():
            counts[status] = counts.get(status, 0) + n
    timed_count = sum(f.timed_count for f in functions.values())
    timed_sum = sum(f.timed_sum for f in functions.values())
    return TaskMetrics(
        counts={status: n for status, n in counts.items() if n > 0},
        avg_duration_seconds=_seconds(timed_sum / timed_count) if timed_count else None,
        by_function=[
            functions[name].result()
            for name in sorted(functions)
            if sum(functions[name].counts.values()) > 0
        ],
    )


class RedisMetrics:
    """``metrics()`` of ``RedisTaskRepository``."""

    client: RedisClient
    keys: KeySpace

    async def metrics(self) -> TaskMetrics:
        reply = await READ(self.client, keys=[self.keys.format_version], args=[self.keys.key()])
        return metrics_from_reply(reply)


def _seconds(ms: float | None) -> float | None:
    return ms / 1000.0 if ms is not None else None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
