"""Response models of the admin API, so OpenAPI documents every JSON route."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class TaskOut(BaseModel):
    """A task as the API shows it (the described system's field names)."""

    task_id: str
    func_name: str
    status: str
    created_at: datetime
    start_time: datetime | None = None
    end_time: datetime | None = None
    duration: float | None = None
    retries_used: int = 0
    max_retries: int = 0
    error: str | None = None
    stacktrace: str | None = None
    tags: dict[str, str] = {}
    source: str = "manual"
    priority: int | None = None
    executor: str | None = None
    run_at: datetime | None = None
    result: Any = None
    retried_from: str | None = None
    scheduled_for: datetime | None = None


class TaskDetailOut(TaskOut):
    """A single task with its log lines."""

    logs: list[str] = []


class FunctionMetricsOut(BaseModel):
    func_name: str
    total: int
    success: int
    failed: int
    running: int
    success_rate: float | None
    avg_duration: float | None
    min_duration: float | None
    max_duration: float | None
    p95_duration: float | None


class MetricsOut(BaseModel):
    """Aggregates over all tasks; ``success_rate`` counts terminal tasks only."""

    total: int
    pending: int
    running: int
    success: int
    failed: int
    interrupted: int
    cancelled: int
    success_rate: float | None
    avg_duration_seconds: float | None
    by_function: list[FunctionMetricsOut]


class CancelOut(BaseModel):
    """The cancelled task."""

    task_id: str
    task: TaskDetailOut


class DeletedOut(BaseModel):
    """How many finished tasks were deleted."""

    deleted: int
