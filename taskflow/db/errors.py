"""Which database errors are worth retrying."""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError


def is_transient(exc: BaseException) -> bool:
    """True for lost connections, timeouts and lock contention; False for rejected data."""
    if isinstance(exc, (OSError, TimeoutError, ConnectionError, DisconnectionError)):
        return True
    if isinstance(exc, sqlite3.OperationalError):  # the inline SQLite writer's own errors
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (OperationalError, InterfaceError))
