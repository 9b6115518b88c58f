"""The two kinds of event observers receive."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from taskflow.models import TaskStatus


@dataclass(frozen=True)
class LogEvent:
    """One ``task_log()`` call."""

    task_id: str
    func_name: str
    message: str
    level: str
    timestamp: datetime
    attempt: int
    tags: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LifecycleEvent:
    """A task changed status (running, success, failed, cancelled, interrupted)."""

    task_id: str
    func_name: str
    status: TaskStatus
    timestamp: datetime
    attempt: int
    retries_used: int
    duration: float | None = None
    error: str | None = None
    stacktrace: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
