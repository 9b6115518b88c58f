"""fastapi-taskflow's ``executors`` module: its names, importable from the same place.

The executors themselves live in ``taskflow.runtime`` (``executors.py`` for
async and thread, ``processes.py`` for worker processes); they are chosen
per task with ``executor=`` on the decorator, not instantiated by users.
``LazyProcessExecutor`` is the same class as ``ProcessExecutor``: taskflow's
process executor always starts its workers lazily.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from taskflow.exceptions import TaskArgumentError
from taskflow.runtime.executors import AsyncExecutor, ThreadExecutor
from taskflow.runtime.processes import ProcessExecutor
from taskflow.runtime.runner import Executor

LazyProcessExecutor = ProcessExecutor


@dataclass
class TaskExecutionContext:
    """What identifies one attempt of a task: id, function name, 0-based attempt, tags."""

    task_id: str
    func_name: str
    attempt: int
    tags: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (to send to another process or log)."""
        return {
            "task_id": self.task_id,
            "func_name": self.func_name,
            "attempt": self.attempt,
            "tags": dict(self.tags),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskExecutionContext:
        """The inverse of ``to_dict``; a missing ``tags`` means none."""
        return cls(
            task_id=data["task_id"],
            func_name=data["func_name"],
            attempt=int(data["attempt"]),
            tags=dict(data.get("tags") or {}),
        )


__all__ = [
    "AsyncExecutor",
    "Executor",
    "LazyProcessExecutor",
    "ProcessExecutor",
    "TaskArgumentError",
    "TaskExecutionContext",
    "ThreadExecutor",
]
