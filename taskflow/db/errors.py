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
    if isinstance(exc, DBAPIError) and (exc.connection_invalidated or is_deadlock(exc)):
        return True
    return isinstance(exc, (OperationalError, InterfaceError))


# MySQL/MariaDB deadlock and lock-wait codes, PostgreSQL's deadlock and serialization states.
_MYSQL_RETRY_CODES = {1205, 1213}
_POSTGRES_RETRY_STATES = {"40001", "40P01"}


def is_deadlock(exc: DBAPIError) -> bool:
    """True when the database aborted the transaction to break a lock cycle: retry it."""
    original = exc.orig
    args = getattr(original, "args", ())
    if args and isinstance(args[0], int) and args[0] in _MYSQL_RETRY_CODES:
        return True
    state = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    return state in _POSTGRES_RETRY_STATES
