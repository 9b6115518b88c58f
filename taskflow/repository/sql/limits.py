"""How large a task's arguments may be on a given database, read once at startup.

A row the database cannot take must be refused at ``add_task()``, with the
limit in the message, rather than discovered by the writer: MariaDB and
MySQL drop the connection on a statement over ``max_allowed_packet`` (16 MiB
by default on MariaDB), which looks exactly like an outage.  A statement
quotes the value, and quoting can double it (every quote, backslash or NUL
byte gains a backslash), so half the packet, less room for the rest of the
row, is what a task's arguments may take there.  Elsewhere the limit is a
generous fixed size: a task's arguments live in memory until it finishes.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from taskflow.db import dialects

MAX_ARGUMENT_BYTES = 64 * 1024 * 1024
# The rest of the row and the statement around it (the other columns are small).
_ROW_ROOM = 1024 * 1024


async def max_argument_bytes(conn: AsyncConnection) -> int:
    """The most bytes a task's stored arguments (JSON text or payload) may take here."""
    if not dialects.is_mysql(conn.dialect):
        return MAX_ARGUMENT_BYTES
    packet = await conn.scalar(text("SELECT @@max_allowed_packet"))
    return max(0, min(MAX_ARGUMENT_BYTES, (int(packet or 0) - _ROW_ROOM) // 2))
