"""Response models of the admin API, so OpenAPI documents every JSON route."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints

from taskflow.replay import MAX_BULK


class ErrorOut(BaseModel):
    """A refusal: what went wrong and, where it can, what to do instead."""

    detail: str


def error(description: str) -> dict[str, Any]:
    """An OpenAPI ``responses`` entry for a status answered with ``ErrorOut``."""
    return {"description": description, "model": ErrorOut}


# Statuses the access policy adds to every route (OpenAccess: cross-site changes only).
VIEWER_ERRORS: dict[int | str, dict[str, Any]] = {401: error("Not signed in")}
OPERATOR_ERRORS: dict[int | str, dict[str, Any]] = {
    401: error("Not signed in"),
    403: error("Read-only user, cross-site request, or missing CSRF token"),
}


class TaskOut(BaseModel):
    """A task as the API shows it (fastapi-taskflow's field names)."""

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
    """Aggregates over all tasks; ``success_rate`` counts terminal tasks only
    (0.0 while none has finished)."""

    total: int
    pending: int
    running: int
    success: int
    failed: int
    interrupted: int
    cancelled: int
    success_rate: float
    avg_duration_seconds: float | None
    by_function: list[FunctionMetricsOut]


class CancelOut(BaseModel):
    """The cancelled task."""

    task_id: str
    task: TaskDetailOut


class DeletedOut(BaseModel):
    """How many finished tasks were deleted."""

    deleted: int


class RetryOut(BaseModel):
    """The new task a retry created (``task_id`` is the new id)."""

    task_id: str
    task: TaskDetailOut


class BulkRetryIn(BaseModel):
    """The tasks to retry: at most ``MAX_BULK`` ids per request."""

    task_ids: list[Annotated[str, StringConstraints(max_length=255)]] = Field(
        max_length=MAX_BULK,
        description=f"Ids of failed or interrupted tasks, at most {MAX_BULK}, without NUL",
    )


class RetryPairOut(BaseModel):
    original_task_id: str
    new_task_id: str


class SkippedOut(BaseModel):
    """Why tasks were not retried, one count per reason."""

    not_found: int = Field(
        default=0, description="No task has the id (or it was deleted meanwhile)"
    )
    duplicate: int = Field(default=0, description="The id was listed more than once")
    not_retryable: int = Field(default=0, description="The task is not failed or interrupted")
    already_retried: int = Field(
        default=0, description="A newer attempt of the same task exists: its chain is replayed once"
    )
    function_unavailable: int = Field(
        default=0, description="The task's function is not registered in this process"
    )
    no_key: int = Field(default=0, description="Encrypted arguments and no encrypt_args_key here")


class RetryReportOut(BaseModel):
    """What a bulk retry or replay did.

    ``dispatched`` and ``skipped`` are exact, and ``skipped_by_reason``
    splits ``skipped``; ``results`` lists at most the first 1,000 retries
    (``truncated`` is then true).  ``capped``: a replay stopped at its limit
    (1,000 retries, or 20,000 failures looked at) and more failures remain:
    call it again to continue.
    """

    dispatched: int
    skipped: int
    skipped_by_reason: SkippedOut = Field(default_factory=SkippedOut)
    results: list[RetryPairOut]
    truncated: bool = False
    capped: bool = False
    limit: int | None = Field(
        default=None, description="Most retries one call creates (retry-failed only)"
    )


class AuditOut(BaseModel):
    """One audit entry: who did what, when."""

    entry_id: int
    action: str
    task_id: str | None = None
    actor: str
    timestamp: datetime
    detail: dict[str, Any] = {}


class InstanceOut(BaseModel):
    """A live app instance and how many tasks it is running."""

    instance_id: str
    hostname: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    version: str | None = None
    running: int


class FunctionOut(BaseModel):
    """A task function registered in this process, with its settings."""

    name: str
    retries: int
    delay: float
    backoff: float
    persist: bool
    requeue_on_interrupt: bool
    eager: bool
    priority: int | None = None
    executor: str
    timeout: float | None = None
    max_delay: float | None = None
    jitter: str | None = None
    retry_on: list[str] | None = Field(
        default=None, description="exception classes retried; null: every exception"
    )
    dont_retry_on: list[str] = Field(
        default_factory=list, description="exception classes never retried (these win)"
    )
