"""Storage behind one async interface; the runtime never sees SQL or Redis."""

from taskflow.repository.base import (
    BatchOutcome,
    InstanceInfo,
    TaskPage,
    TaskQuery,
    TaskRepository,
    WriteBatch,
)

__all__ = ["BatchOutcome", "InstanceInfo", "TaskPage", "TaskQuery", "TaskRepository", "WriteBatch"]
