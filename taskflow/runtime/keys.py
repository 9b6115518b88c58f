"""Idempotency keys for an in-memory database, which only this process can see."""

from __future__ import annotations

from taskflow.models import TaskRecord, TaskStatus


class MemoryKeys:
    """Key -> task map with the database rule: a failed task frees its key."""

    def __init__(self) -> None:
        self._holders: dict[str, TaskRecord] = {}

    def settle(self, record: TaskRecord) -> str:
        """The id of the task holding ``record``'s key, taking the key for ``record`` if free."""
        key = record.idempotency_key
        assert key is not None
        holder = self._holders.get(key)
        if holder is not None and holder.status is not TaskStatus.FAILED:
            return holder.task_id
        self._holders[key] = record
        return record.task_id
