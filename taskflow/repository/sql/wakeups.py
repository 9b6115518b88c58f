"""Cross-instance wake-ups on PostgreSQL: LISTEN/NOTIFY on one channel.

When work appears that no instance holds (rows committed by a caller's own
transaction, tasks released by an instance shutting down), a ``NOTIFY`` tells
every listening instance to claim at once instead of at its next poll.
Polling stays the ground truth: a connection pooler that drops notifications
only makes pick-up slower, never loses a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection

logger = logging.getLogger("taskflow.wakeups")

CHANNEL = "taskflow_work"
NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', '')")
# Task rows changed: live dashboards on other instances re-read their page.
# The payload is the sender's instance id, so an instance skips its own.
CHANGES_CHANNEL = "taskflow_changes"
NOTIFY_CHANGES = text(f"SELECT pg_notify('{CHANGES_CHANNEL}', :sender)")


async def notify(conn: AsyncConnection) -> None:
    """Queue a wake-up on ``conn``'s transaction; PostgreSQL delivers it at commit."""
    await conn.execute(NOTIFY)


class PostgresListener:
    """A dedicated connection that LISTENs and calls back on each notification.

    asyncpg calls back by itself; psycopg delivers notifications to a reader
    task that waits on its ``notifies()`` generator.
    """

    def __init__(
        self,
        url: URL,
        on_wake: Callable[[], None],
        *,
        channel: str = CHANNEL,
        ignore_sender: str | None = None,
        connect_args: dict[str, Any] | None = None,
    ) -> None:
        # The keyword arguments the driver's connect() takes, as the engine's
        # own connections get them: URL parts, URL options, typed options.
        self._psycopg = url.get_driver_name() == "psycopg"
        database = "dbname" if self._psycopg else "database"
        self._connect: dict[str, Any] = url.translate_connect_args(
            username="user", database=database
        )
        for key, value in url.query.items():
            if isinstance(value, tuple) and self._psycopg:  # several "host:port"
                self._connect.update(_libpq_hosts(value))
            else:
                self._connect[key] = list(value) if isinstance(value, tuple) else value
        self._connect.update(connect_args or {})
        self._on_wake = on_wake
        self._channel = channel
        self._ignore_sender = ignore_sender
        self._conn: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            if self._psycopg:
                await self._start_psycopg()
            else:
                import asyncpg

                self._conn = await asyncpg.connect(**self._connect)
                await self._conn.add_listener(self._channel, self._received)
        except Exception as exc:  # polling still works without it
            logger.warning("LISTEN %s unavailable (%s); relying on polling", self._channel, exc)
            await self.stop()

    async def _start_psycopg(self) -> None:
        import psycopg

        self._conn = await psycopg.AsyncConnection.connect(autocommit=True, **self._connect)
        await self._conn.execute(f"LISTEN {self._channel}")
        self._reader = asyncio.create_task(self._read_psycopg(self._conn))

    async def _read_psycopg(self, conn: Any) -> None:
        try:
            async for notice in conn.notifies():
                self._received(conn, notice.pid, notice.channel, notice.payload)
        except Exception as exc:  # the connection died: polling goes on
            if self._conn is conn:
                logger.warning("LISTEN %s lost (%s); relying on polling", self._channel, exc)

    def _received(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if self._ignore_sender is None or payload != self._ignore_sender:
            self._on_wake()

    async def stop(self) -> None:
        conn, self._conn = self._conn, None
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        if conn is not None:
            try:
                if self._psycopg:
                    await conn.close()
                else:
                    await conn.close(timeout=5)
            except Exception as exc:
                logger.debug("closing the LISTEN connection failed: %s", exc)


def _libpq_hosts(hosts: tuple[str, ...]) -> dict[str, str]:
    """SQLAlchemy's several ``host:port`` as libpq's comma-separated host and port lists."""
    pairs = [host.rpartition(":")[::2] if ":" in host else (host, "") for host in hosts]
    return {
        "host": ",".join(name for name, _port in pairs),
        "port": ",".join(port for _name, port in pairs),
    }
