"""Reading tasks for the commands: a bounded, keyset-paged list, and one task by id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

from taskflow.exceptions import TaskNotFoundError
from taskflow.models import TaskRecord
from taskflow.repository.base import TaskQuery, TaskRepository

PAGE = 500  # tasks read per query: short queries, bounded memory per page


async def read_tasks(
    repository: TaskRepository, query: TaskQuery, limit: int
) -> tuple[list[TaskRecord], bool]:
    """Up to ``limit`` tasks matching ``query``, newest first, and whether more match."""
    found: list[TaskRecord] = []
    cursor: str | None = None
    while len(found) < limit:
        page = await repository.list_tasks(
            replace(query, limit=min(PAGE, limit - len(found)), cursor=cursor)
        )
        found.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    return found, cursor is not None


async def find_task(repository: TaskRepository, task_id: str) -> TaskRecord:
    """The task with that id, without its logs.

    Raises:
        TaskNotFoundError: no task has that id.
    """
    record = await repository.get_task(task_id, with_logs=False)
    if record is None:
        raise TaskNotFoundError(f"no task has id {task_id!r}")
    return record


async def pages(
    repository: TaskRepository, query: TaskQuery, limit: int
) -> AsyncIterator[list[TaskRecord]]:
    """The tasks matching ``query`` a page at a time, newest first, ``limit`` at most.

    For the commands that count or aggregate: one page is held at a time.
    """
    seen = 0
    cursor: str | None = None
    while seen < limit:
        page = await repository.list_tasks(
            replace(query, limit=min(PAGE, limit - seen), cursor=cursor)
        )
        if page.items:
            yield page.items
        seen += len(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return
