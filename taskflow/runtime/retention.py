"""Periodic pruning of finished history (``retention_days``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from taskflow.models import utcnow
from taskflow.repository.base import TaskRepository

logger = logging.getLogger("taskflow.retention")


class RetentionService:
    """Deletes terminal tasks older than ``days`` every ``interval`` seconds.

    Every instance may run it: the deletes are idempotent and batched, so two
    instances pruning at once only share the work.
    """

    def __init__(
        self,
        repository: TaskRepository,
        days: float,
        *,
        interval: float = 6 * 3600.0,
        first_run_after: float = 60.0,
        batch: int = 1000,
    ) -> None:
        if days <= 0:
            raise ValueError(f"retention_days must be > 0, got {days!r}")
        self._repository = repository
        self.days = days
        self._interval = interval
        self._first = first_run_after
        self._batch = batch
        self._task: asyncio.Task[None] | None = None
        self.deleted_total = 0

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="taskflow-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def prune(self) -> int:
        """Delete what is past the window now; returns the number of tasks deleted."""
        cutoff = utcnow() - timedelta(days=self.days)
        deleted = await self._repository.delete_finished_before(cutoff, batch=self._batch)
        self.deleted_total += deleted
        return deleted

    async def _loop(self) -> None:
        await asyncio.sleep(self._first)
        while True:
            try:
                deleted = await self.prune()
                if deleted:
                    logger.info("retention: deleted %d finished tasks", deleted)
            except Exception as exc:  # a database hiccup must not end pruning for good
                logger.warning("retention run failed (%s); trying again later", exc)
            await asyncio.sleep(self._interval)
