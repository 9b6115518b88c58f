"""Cross-instance wake-ups on PostgreSQL: LISTEN/NOTIFY on one channel.

When work appears that no instance holds (rows committed by a caller's own
transaction, tasks released by an instance shutting down), a ``NOTIFY`` tells
every listening instance to claim at once instead of at its next poll.
Polling stays the ground truth: a connection pooler that drops notifications
only makes pick-up slower, never loses a task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection

logger = logging.getLogger("taskflow.wakeups")

CHANNEL = "taskflow_work"
NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', '')")


async def notify(conn: AsyncConnection) -> None:
    """Queue a wake-up on ``conn``'s transaction; PostgreSQL delivers it at commit."""
    await conn.execute(NOTIFY)


class PostgresListener:
    """A dedicated asyncpg connection that LISTENs and calls back on each notification."""

    def __init__(self, url: URL, on_wake: Callable[[], None]) -> None:
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._on_wake = on_wake
        self._conn: Any = None

    async def start(self) -> None:
        import asyncpg

        try:
            self._conn = await asyncpg.connect(self._dsn)
            await self._conn.add_listener(CHANNEL, self._received)
        except Exception as exc:  # polling still works without it
            logger.warning("LISTEN %s unavailable (%s); relying on polling", CHANNEL, exc)
            await self.stop()

    def _received(self, *_args: Any) -> None:
        self._on_wake()

    async def stop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close(timeout=5)
            except Exception as exc:
                logger.debug("closing the LISTEN connection failed: %s", exc)
