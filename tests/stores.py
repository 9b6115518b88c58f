"""Stores besides a fresh SQL database: a Redis key prefix of a test's own; rows read back.

The SQL side lives in ``tests/conftest.py`` (one database per session, reset
per test).  Redis has no databases to spare, so a test gets a key prefix of
its own instead, and every key under it is deleted when the test ends; the
drills read rows back through the repository interface there, since Redis
has no SQL to read them with.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from taskflow.models import TaskStatus
from taskflow.repository.factory import create_repository
from taskflow.repository.values import TaskQuery
from taskflow.settings import resolve_database_url

DELETE_CHUNK = 500


def is_redis(url: str) -> bool:
    """Whether ``url`` names a Redis store rather than an SQL database."""
    return url.startswith(("redis://", "rediss://"))


def delete_redis_prefix(server_url: str, prefix: str) -> None:
    """Delete every key of the deployment ``prefix`` (each carries the hash tag ``{prefix}``)."""
    import redis  # the redis extra: only the tests that use Redis need it

    client = redis.Redis.from_url(server_url)
    try:
        doomed = list(client.scan_iter(match=f"{{{prefix}}}:*", count=1000))
        for start in range(0, len(doomed), DELETE_CHUNK):
            client.delete(*doomed[start : start + DELETE_CHUNK])
    finally:
        client.close()


@contextmanager
def redis_prefix_url(server_url: str, stem: str = "t") -> Iterator[str]:
    """``server_url`` on a key prefix no other test uses; its keys are deleted afterwards."""
    prefix = stem + uuid.uuid4().hex[:12]
    try:
        yield f"{server_url}{'&' if '?' in server_url else '?'}key_prefix={prefix}"
    finally:
        delete_redis_prefix(server_url, prefix)


async def _listed(url: str, statuses: Sequence[TaskStatus] | None) -> dict[str, dict[str, Any]]:
    repository = create_repository(resolve_database_url(url))
    await repository.open()
    try:
        rows: dict[str, dict[str, Any]] = {}
        cursor: str | None = None
        while True:
            page = await repository.list_tasks(TaskQuery(status=statuses, limit=500, cursor=cursor))
            for record in page.items:
                rows[record.task_id] = {
                    "id": record.task_id,
                    "func_name": record.func_name,
                    "status": TaskStatus(record.status).value,
                    "attempt": record.retries_used,
                    "owner": record.owner,
                    "error": record.error,
                    "idempotency_key": record.idempotency_key,
                    "lease_expires_at": record.lease_expires_at,
                }
            if page.next_cursor is None:
                return rows
            cursor = page.next_cursor
    finally:
        await repository.close()


def repository_rows(
    url: str, statuses: Sequence[TaskStatus] | None = None
) -> dict[str, dict[str, Any]]:
    """id -> the task's row (the columns the drills read), through the repository interface.

    Every task (of ``statuses``, when given), page after page of ``list_tasks``.
    Blocking, with an event loop of its own: from async code, call it through
    ``asyncio.to_thread``.
    """
    return asyncio.run(_listed(url, statuses))
