"""The public record types: plain dataclasses with no database or web dependency."""

from __future__ import annotations

import enum
import operator
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Literal

from taskflow.ids import new_task_id
from taskflow.storable import shown_json, shown_text

ExecutorName = Literal["async", "thread", "process"]
JitterName = Literal["full", "equal"]
JITTERS: tuple[str, ...] = ("full", "equal")
# What ``retry_on=`` / ``dont_retry_on=`` take: one class or a tuple, as ``except`` does.
ExceptionTypes = type[Exception] | tuple[type[Exception], ...]
LogLevel = Literal["debug", "info", "warning", "error"]
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")


def utcnow() -> datetime:
    """The current time, timezone-aware UTC: the only kind of timestamp taskflow handles."""
    return datetime.now(timezone.utc)


class TaskStatus(str, enum.Enum):
    """Where a task is in its life; the last four are terminal."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Whether the task is over (success, failed, interrupted, cancelled)."""
        return self in TERMINAL_STATUSES

    def __str__(self) -> str:
        return self.value


TERMINAL_STATUSES = frozenset(
    {TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.INTERRUPTED, TaskStatus.CANCELLED}
)
ACTIVE_STATUSES = frozenset({TaskStatus.PENDING, TaskStatus.RUNNING})


class TaskSource(str, enum.Enum):
    """How a task row came to exist."""

    MANUAL = "manual"
    SCHEDULED = "scheduled"
    RETRY = "retry"
    REQUEUE = "requeue"

    def __str__(self) -> str:
        return self.value


@dataclass
class TaskConfig:
    """Per-function settings given to ``@task_manager.task()``.

    fastapi-taskflow's fields, then taskflow's own retry options (the last four).
    """

    retries: int = 0
    delay: float = 0.0
    backoff: float = 1.0
    persist: bool = False
    name: str | None = None
    requeue_on_interrupt: bool = False
    eager: bool = False
    priority: int | None = None
    executor: ExecutorName | None = None
    timeout: float | None = None
    max_delay: float | None = None
    jitter: JitterName | None = None
    retry_on: ExceptionTypes | None = None
    dont_retry_on: ExceptionTypes | None = None


@dataclass
class TaskLogEntry:
    """One ``task_log()`` line as stored."""

    task_id: str
    attempt: int
    level: str
    message: str
    created_at: datetime
    extra: dict[str, Any] = field(default_factory=dict)
    entry_id: str = field(default_factory=lambda: new_task_id())

    def render(self) -> str:
        """fastapi-taskflow's stored line format: ``%Y-%m-%dT%H:%M:%S message``."""
        return f"{self.created_at.strftime('%Y-%m-%dT%H:%M:%S')} {self.message}"


@dataclass(slots=True)
class TaskRecord:
    """Everything known about one task: the row of ``taskflow_tasks`` as a Python object.

    Field names follow fastapi-taskflow (``task_id``, ``start_time``,
    ``retries_used``...) so code written against it keeps working; the extra
    fields are taskflow's (lease, schedule slot, result, payload).
    """

    task_id: str
    func_name: str
    status: TaskStatus
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=utcnow)
    start_time: datetime | None = None
    end_time: datetime | None = None
    retries_used: int = 0
    error: str | None = None
    logs: list[str] = field(default_factory=list)
    stacktrace: str | None = None
    idempotency_key: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    encrypted_payload: bytes | None = None
    source: str = TaskSource.MANUAL.value
    priority: int | None = None
    executor: str | None = None
    # taskflow's own fields
    max_retries: int = 0
    run_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    duration_ms: float | None = None
    result: Any = None
    args_stored: bool = True
    payload: bytes | None = None
    payload_format: str = "json"
    owner: str | None = None
    lease_epoch: int = 0
    lease_expires_at: datetime | None = None
    retried_from: str | None = None
    schedule_name: str | None = None
    scheduled_for: datetime | None = None

    def snapshot(self) -> TaskRecord:
        """A copy of the current state (lists and dicts shared, not copied).

        The group-commit writer takes one when it seals a batch: the runner
        keeps changing the live record while the batch waits for a
        connection, and a batch must write the state its log lines belong to,
        not a later one whose log lines are still queued for the next commit.
        """
        return TaskRecord(*_record_values(self))

    @property
    def duration(self) -> float | None:
        """Seconds the last attempt ran, or None while it has not finished."""
        if self.duration_ms is not None:
            return self.duration_ms / 1000.0
        if self.start_time and self.end_time:
            return (self.end_time - self.start_time).total_seconds()
        return None

    @property
    def attempt(self) -> int:
        """The 0-based number of the current (or last) attempt."""
        return self.retries_used

    def to_dict(self, *, include_logs: bool = True) -> dict[str, Any]:
        """fastapi-taskflow's JSON shape, plus taskflow's additions.

        Text and JSON values are made fit for any JSON response (see
        ``storable.shown_json``): a value stored by another program must not
        make a page of tasks fail.
        """
        data: dict[str, Any] = {
            "task_id": self.task_id,
            "func_name": self.func_name,
            "status": self.status.value,
            "created_at": _iso(self.created_at),
            "start_time": _iso(self.start_time),
            "end_time": _iso(self.end_time),
            "duration": self.duration,
            "retries_used": self.retries_used,
            "error": shown_text(self.error),
            "stacktrace": shown_text(self.stacktrace),
            "tags": shown_json(self.tags),
            "source": self.source,
            "priority": self.priority,
            "executor": self.executor,
            "max_retries": self.max_retries,
            "run_at": _iso(self.run_at),
            "result": shown_json(self.result),
            "retried_from": self.retried_from,
            "scheduled_for": _iso(self.scheduled_for),
        }
        if include_logs:
            data["logs"] = [shown_text(line) for line in self.logs]
        return data


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class ScheduledOnce:
    """A one-off task armed by ``schedule_once()`` and not yet run: what ``list_scheduled()`` lists.

    ``fire_at`` is when it is due (fastapi-taskflow's name); ``task_id`` names
    the ``pending`` task row that will run, which the dashboard shows too.
    """

    run_key: str
    task_id: str
    func_name: str
    fire_at: datetime
    priority: int | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditEntry:
    """One row of the audit log: who changed what through the admin API (or logged in)."""

    entry_id: int
    action: str
    task_id: str | None
    actor: str
    timestamp: datetime
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """fastapi-taskflow's shape: entry_id, action, task_id, actor, timestamp, detail."""
        return {
            "entry_id": self.entry_id,
            "action": self.action,
            "task_id": self.task_id,
            "actor": self.actor,
            "timestamp": _iso(self.timestamp),
            "detail": dict(self.detail),
        }


@dataclass(frozen=True)
class FunctionMetrics:
    """Duration statistics of one function's finished runs, in seconds."""

    func_name: str
    total: int
    success: int
    failed: int
    running: int
    avg_duration: float | None
    min_duration: float | None
    max_duration: float | None
    p95_duration: float | None

    @property
    def success_rate(self) -> float | None:
        finished = self.success + self.failed
        return self.success / finished if finished else None


@dataclass(frozen=True)
class TaskMetrics:
    """Aggregates over every task, computed by the database."""

    counts: dict[str, int]
    avg_duration_seconds: float | None
    by_function: list[FunctionMetrics]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def success_rate(self) -> float | None:
        """Successes over terminal tasks: pending and running ones have no outcome yet."""
        terminal = sum(self.counts.get(s.value, 0) for s in TERMINAL_STATUSES)
        return self.counts.get("success", 0) / terminal if terminal else None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"total": self.total}
        for status in TaskStatus:
            data[status.value] = self.counts.get(status.value, 0)
        rate = self.success_rate
        data["success_rate"] = round(rate, 6) if rate is not None else None
        avg = self.avg_duration_seconds
        data["avg_duration_seconds"] = round(avg, 6) if avg is not None else None
        data["by_function"] = [
            {
                "func_name": f.func_name,
                "total": f.total,
                "success": f.success,
                "failed": f.failed,
                "running": f.running,
                "success_rate": f.success_rate,
                "avg_duration": f.avg_duration,
                "min_duration": f.min_duration,
                "max_duration": f.max_duration,
                "p95_duration": f.p95_duration,
            }
            for f in self.by_function
        ]
        return data


_record_values = operator.attrgetter(*(f.name for f in fields(TaskRecord)))
