"""metrics(): counts by status and per-function durations, kept by the store as tasks move."""

from __future__ import annotations

import pytest

from taskflow.models import TaskRecord, TaskStatus
from taskflow.repository.base import TaskRepository, WriteBatch
from tests.conformance.records import at, finished, make_record


async def test_metrics_of_an_empty_store(backend: TaskRepository) -> None:
    metrics = await backend.metrics()
    assert metrics.total == 0
    assert metrics.success_rate is None
    assert metrics.avg_duration_seconds is None
    assert metrics.by_function == []


def done(n: int, func_name: str, status: TaskStatus, ms: float | None) -> TaskRecord:
    return finished(make_record(n, func_name=func_name), status, end=at(n + 1), duration_ms=ms)


async def test_counts_rates_and_durations(backend: TaskRepository) -> None:
    records = [
        done(1, "alpha", TaskStatus.SUCCESS, 100.0),
        done(2, "alpha", TaskStatus.SUCCESS, 300.0),
        done(3, "alpha", TaskStatus.FAILED, 200.0),
        done(4, "alpha", TaskStatus.CANCELLED, None),
        make_record(5, func_name="alpha", status=TaskStatus.RUNNING),
        make_record(6, func_name="alpha"),
        done(7, "beta", TaskStatus.SUCCESS, 1500.0),
        make_record(8, func_name="gamma"),
    ]
    await backend.apply(WriteBatch(inserts=records))
    metrics = await backend.metrics()
    assert {k: v for k, v in metrics.counts.items() if v} == {
        "success": 3,
        "failed": 1,
        "cancelled": 1,
        "running": 1,
        "pending": 2,
    }
    assert metrics.total == 8
    assert metrics.success_rate == pytest.approx(3 / 5)
    assert metrics.avg_duration_seconds == pytest.approx((100 + 300 + 200 + 1500) / 4 / 1000)
    by_name = {f.func_name: f for f in metrics.by_function}
    assert sorted(by_name) == ["alpha", "beta", "gamma"]
    alpha = by_name["alpha"]
    assert (alpha.total, alpha.success, alpha.failed, alpha.running) == (6, 2, 1, 1)
    assert alpha.avg_duration == pytest.approx(0.2)
    assert alpha.min_duration == pytest.approx(0.1)
    assert alpha.max_duration == pytest.approx(0.3)
    assert by_name["beta"].p95_duration == pytest.approx(1.5)
    gamma = by_name["gamma"]
    assert (gamma.total, gamma.avg_duration, gamma.p95_duration) == (1, None, None)


async def test_metrics_follow_updates_and_transitions(backend: TaskRepository) -> None:
    first = make_record(1, func_name="alpha")
    second = make_record(2, func_name="alpha", status=TaskStatus.RUNNING, lease_epoch=1)
    await backend.apply(WriteBatch(inserts=[first, second]))
    await backend.apply(
        WriteBatch(updates=[finished(first, TaskStatus.SUCCESS, end=at(5), duration_ms=250.0)])
    )
    assert await backend.transition(
        second.task_id,
        expected_status=[TaskStatus.RUNNING],
        expected_epoch=1,
        status=TaskStatus.CANCELLED,
    )
    metrics = await backend.metrics()
    assert {k: v for k, v in metrics.counts.items() if v} == {"success": 1, "cancelled": 1}
    [alpha] = metrics.by_function
    assert (alpha.total, alpha.success, alpha.running) == (2, 1, 0)
    assert alpha.avg_duration == pytest.approx(0.25)


async def test_refused_transition_changes_no_count(backend: TaskRepository) -> None:
    record = make_record(1, status=TaskStatus.RUNNING, lease_epoch=2)
    await backend.apply(WriteBatch(inserts=[record]))
    before = await backend.metrics()
    assert not await backend.transition(
        record.task_id,
        expected_status=[TaskStatus.RUNNING],
        expected_epoch=1,
        status=TaskStatus.FAILED,
    )
    assert await backend.metrics() == before
