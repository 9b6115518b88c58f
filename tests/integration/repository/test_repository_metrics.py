"""``SqlTaskRepository.metrics``: counts, rates, durations and a nearest-rank p95.

They run on SQLite, PostgreSQL and MySQL.
"""

from __future__ import annotations

from typing import Any

import pytest

from taskflow.models import TaskRecord, TaskStatus
from taskflow.repository.base import WriteBatch
from taskflow.repository.sql import SqlTaskRepository
from taskflow.repository.sql.stats import P95_RELATIVE_ERROR
from tests.integration.repository.records import make_record


def nearest_rank_p95(values: list[float]) -> float:
    ordered = sorted(values)
    rank = -(-95 * len(ordered) // 100)  # ceil(0.95 n), 1-based
    return ordered[rank - 1]


def p95_close(expected_ms: float) -> Any:
    """The roll-up's p95 comes from a duration histogram: within half a bucket (< 1/32)."""
    return pytest.approx(expected_ms / 1000, rel=P95_RELATIVE_ERROR)


async def test_metrics_empty(repo: SqlTaskRepository) -> None:
    metrics = await repo.metrics()
    assert metrics.total == 0
    assert metrics.success_rate is None
    assert metrics.avg_duration_seconds is None
    assert metrics.by_function == []


async def test_metrics_counts_rates_and_durations(repo: SqlTaskRepository) -> None:
    records: list[TaskRecord] = []
    n = 0

    def add(func_name: str, status: TaskStatus, duration_ms: float | None = None) -> None:
        nonlocal n
        n += 1
        records.append(make_record(n, func_name=func_name, status=status, duration_ms=duration_ms))

    # alpha: 37 finished runs with scattered, distinct durations, plus unfinished ones.
    alpha = [round(((i * 37) % 101) * 13.25 + i / 8, 3) for i in range(37)]
    assert len(set(alpha)) == 37
    for i, ms in enumerate(alpha):
        add("alpha", TaskStatus.FAILED if i % 4 == 0 else TaskStatus.SUCCESS, ms)
    for _ in range(3):
        add("alpha", TaskStatus.RUNNING)
    add("alpha", TaskStatus.PENDING)
    # Interrupted and cancelled runs have an outcome but are not finished runs.
    add("alpha", TaskStatus.INTERRUPTED, 999_999.0)
    add("alpha", TaskStatus.CANCELLED, 0.5)
    beta = [1500.0]
    add("beta", TaskStatus.SUCCESS, beta[0])
    add("beta", TaskStatus.CANCELLED)
    gamma = [250.0, 40.5]
    add("gamma", TaskStatus.SUCCESS, gamma[0])
    add("gamma", TaskStatus.FAILED, gamma[1])
    add("gamma", TaskStatus.INTERRUPTED)
    add("gamma", TaskStatus.PENDING)
    add("delta", TaskStatus.PENDING)
    add("delta", TaskStatus.RUNNING)
    await repo.apply(WriteBatch(inserts=records))

    metrics = await repo.metrics()
    expected_counts = {s.value: sum(1 for r in records if r.status is s) for s in TaskStatus}
    assert {k: v for k, v in metrics.counts.items() if v} == {
        k: v for k, v in expected_counts.items() if v
    }
    assert expected_counts["cancelled"] == 2 and expected_counts["interrupted"] == 2
    assert metrics.total == len(records) == 51
    terminal = sum(1 for r in records if r.status.is_terminal)
    success = expected_counts["success"]
    assert terminal == len(records) - 7  # pending and running have no outcome yet
    assert metrics.success_rate == pytest.approx(success / terminal)
    finished = alpha + beta + gamma
    assert metrics.avg_duration_seconds == pytest.approx(sum(finished) / len(finished) / 1000)
    data = metrics.to_dict()
    assert data["cancelled"] == 2 and data["interrupted"] == 2 and data["total"] == 51

    by_name = {f.func_name: f for f in metrics.by_function}
    assert [f.func_name for f in metrics.by_function] == ["alpha", "beta", "delta", "gamma"]
    for name, durations in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        fm = by_name[name]
        rows = [r for r in records if r.func_name == name]
        assert fm.total == len(rows), name
        assert fm.success == sum(1 for r in rows if r.status is TaskStatus.SUCCESS), name
        assert fm.failed == sum(1 for r in rows if r.status is TaskStatus.FAILED), name
        assert fm.running == sum(1 for r in rows if r.status is TaskStatus.RUNNING), name
        assert fm.avg_duration == pytest.approx(sum(durations) / len(durations) / 1000), name
        assert fm.min_duration == pytest.approx(min(durations) / 1000), name
        assert fm.max_duration == pytest.approx(max(durations) / 1000), name
        assert fm.p95_duration == p95_close(nearest_rank_p95(durations)), name
    assert (by_name["alpha"].total, by_name["alpha"].running) == (43, 3)
    assert by_name["alpha"].p95_duration == p95_close(sorted(alpha)[35])
    # A bucket holding one task reports it exactly.
    assert by_name["beta"].p95_duration == pytest.approx(1.5)
    assert by_name["gamma"].p95_duration == pytest.approx(0.25)  # rank ceil(1.9) = 2: the max
    assert by_name["gamma"].success_rate == pytest.approx(0.5)
    delta = by_name["delta"]
    assert (delta.total, delta.success, delta.failed, delta.running) == (2, 0, 0, 1)
    assert (delta.avg_duration, delta.min_duration, delta.max_duration, delta.p95_duration) == (
        None,
        None,
        None,
        None,
    )


@pytest.mark.parametrize("count", [1, 2, 19, 20, 21, 37, 100, 1000])
async def test_metrics_p95_is_nearest_rank(repo: SqlTaskRepository, count: int) -> None:
    durations = [float((i * 7919) % 1009) + 0.5 for i in range(count)]
    records = [
        make_record(i + 1, func_name="f", status=TaskStatus.SUCCESS, duration_ms=ms)
        for i, ms in enumerate(durations)
    ]
    await repo.apply(WriteBatch(inserts=records))
    (fm,) = (await repo.metrics()).by_function
    assert fm.p95_duration == p95_close(nearest_rank_p95(durations))
    assert (fm.min_duration, fm.max_duration) == (
        pytest.approx(min(durations) / 1000),
        pytest.approx(max(durations) / 1000),
    )
