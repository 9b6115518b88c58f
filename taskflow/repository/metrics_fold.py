"""Folding a backend's statistics into ``TaskMetrics``: one tally per function, whatever the store.

SQL reads its roll-up in one statement and Redis in one script, and each
returns its cells in its own shape; both must come out as the same numbers.
So each backend only walks its reply and feeds ``FunctionTally`` objects,
and the sums, the averages and the per-function ``FunctionMetrics`` are
made here once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from taskflow.models import FunctionMetrics, TaskMetrics, TaskStatus
from taskflow.repository.histogram import TIMED as TIMED
from taskflow.repository.histogram import percentile


class FunctionTally:
    """One function's counts and durations (ms) while a backend's reply is folded."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts: dict[str, int] = {}
        self.timed_count = 0
        self.timed_sum = 0.0
        self.low: float | None = None
        self.high: float | None = None
        # bucket -> [count, min, max], when the backend hands over the histogram;
        # a backend that reads p95 itself sets ``p95`` instead.
        self.histogram: dict[int, list[Any]] = {}
        self.p95: float | None = None

    def count(self, status: str, n: int) -> None:
        """``n`` more tasks in ``status``."""
        self.counts[status] = self.counts.get(status, 0) + n

    def timed(self, n: int, total_ms: float, low: float | None, high: float | None) -> None:
        """``n`` finished runs that took ``total_ms`` together, the fastest ``low``."""
        self.timed_count += n
        self.timed_sum += total_ms
        self.low = _lesser(self.low, low)
        self.high = _greater(self.high, high)

    def bucket(self, bucket: int, n: int, low: float | None, high: float | None) -> None:
        """``n`` runs in one histogram bucket, for p95."""
        entry = self.histogram.setdefault(bucket, [0, None, None])
        entry[0] += n
        entry[1] = _lesser(entry[1], low)
        entry[2] = _greater(entry[2], high)

    def result(self) -> FunctionMetrics:
        avg = self.timed_sum / self.timed_count if self.timed_count else None
        p95 = self.p95 if self.p95 is not None else percentile(sorted(self.histogram.items()), 95)
        return FunctionMetrics(
            func_name=self.name,
            total=sum(self.counts.values()),
            success=self.counts.get(TaskStatus.SUCCESS.value, 0),
            failed=self.counts.get(TaskStatus.FAILED.value, 0),
            running=self.counts.get(TaskStatus.RUNNING.value, 0),
            avg_duration=seconds(avg),
            min_duration=seconds(self.low),
            max_duration=seconds(self.high),
            p95_duration=seconds(p95),
        )


class Tallies(dict[str, FunctionTally]):
    """Function name -> its tally, created on first mention."""

    def __missing__(self, name: str) -> FunctionTally:
        tally = self[name] = FunctionTally(name)
        return tally


def task_metrics(tallies: Iterable[FunctionTally]) -> TaskMetrics:
    """The overall counts and average, and one ``FunctionMetrics`` per function with tasks."""
    functions = sorted(tallies, key=lambda tally: tally.name)
    counts: dict[str, int] = {}
    for tally in functions:
        for status, n in tally.counts.items():
            counts[status] = counts.get(status, 0) + n
    timed_count = sum(tally.timed_count for tally in functions)
    timed_sum = sum(tally.timed_sum for tally in functions)
    return TaskMetrics(
        counts={status: n for status, n in counts.items() if n > 0},
        avg_duration_seconds=seconds(timed_sum / timed_count) if timed_count else None,
        by_function=[tally.result() for tally in functions if sum(tally.counts.values()) > 0],
    )


def seconds(ms: float | None) -> float | None:
    return ms / 1000.0 if ms is not None else None


def as_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _lesser(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _greater(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)
