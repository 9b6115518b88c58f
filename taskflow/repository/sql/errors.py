"""What a database error means: worth retrying, or a refusal of the data written.

The exception class says little: drivers raise ``OperationalError`` for a
lost connection and for a CHECK constraint alike (PyMySQL), and a value the
driver cannot encode is no database error at all.  So errors are read by
their code, per dialect: MySQL/MariaDB error numbers, PostgreSQL SQLSTATEs,
SQLite result codes.  A retry fixes a transient error; a data error fails
the write that caused it, whatever the number of attempts.

Some codes are ambiguous: MariaDB drops the connection on a packet over
``max_allowed_packet`` (2013, as an outage would).  They count as transient
here; the writer tells them apart by asking whether the database answers
other statements meanwhile (see ``runtime/splitter.py``).
"""

from __future__ import annotations

import sqlite3

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

from taskflow.db.engine import TLS_NOT_SET_UP
from taskflow.exceptions import ConfigurationError

# Lost or refused connections, server going away, lock waits and deadlocks,
# too many connections, read-only during a failover.
_MYSQL_TRANSIENT = {
    1040, 1053, 1205, 1213, 1290, 1836, 1927, 2002, 2003, 2006, 2013, 2026, 2055, 4031,
}  # fmt: skip
# Deadlock and lock-wait codes alone (is_deadlock), and PostgreSQL's deadlock
# and serialization failure.
_MYSQL_RETRY_CODES = {1205, 1213}
# SQLSTATE classes: 08 connection exception, 53 insufficient resources,
# 57 operator intervention (shutdown, statement timeout), 58 system error;
# and lock not available.
_POSTGRES_TRANSIENT_CLASSES = {"08", "53", "57", "58"}
_POSTGRES_RETRY_STATES = {"40001", "40P01"}
_POSTGRES_TRANSIENT_STATES = _POSTGRES_RETRY_STATES | {"55P03"}
# SQLite primary result codes: BUSY, LOCKED, NOMEM, IOERR, FULL, CANTOPEN, PROTOCOL.
_SQLITE_TRANSIENT = {5, 6, 7, 10, 13, 14, 15}


def is_transient(exc: BaseException) -> bool:
    """True for lost connections, timeouts and lock contention; False for rejected data.

    A Python error raised while a row is converted for the driver (a
    ``UnicodeEncodeError``, a ``ValueError``, a ``TypeError``) is about the
    data and never transient.
    """
    if isinstance(exc, (OSError, TimeoutError, ConnectionError, DisconnectionError)):
        return True
    if isinstance(exc, sqlite3.Error):  # the inline SQLite writer's own errors
        return _sqlite_transient(exc)
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    original = exc.orig
    if isinstance(original, (OSError, TimeoutError)):
        return True
    state = _sqlstate(original)
    if state is not None:
        return state[:2] in _POSTGRES_TRANSIENT_CLASSES or state in _POSTGRES_TRANSIENT_STATES
    if isinstance(original, sqlite3.Error):
        return _sqlite_transient(original)
    number = _mysql_number(original)
    if number is not None:
        return number in _MYSQL_TRANSIENT
    # No code to read (a driver's own connection errors): its class is all there is.
    return isinstance(exc, (OperationalError, InterfaceError))


def is_deadlock(exc: DBAPIError) -> bool:
    """True when the database aborted the transaction to break a lock cycle: retry it."""
    original = exc.orig
    if _sqlstate(original) in _POSTGRES_RETRY_STATES:
        return True
    return _mysql_number(original) in _MYSQL_RETRY_CODES


def _mysql_number(original: object) -> int | None:
    # PyMySQL (under aiomysql) puts the server's error number first in args;
    # an OSError's errno is no server error number.
    if isinstance(original, (sqlite3.Error, OSError)):
        return None
    args = getattr(original, "args", ())
    if args and type(args[0]) is int:
        return args[0]
    return None


def _sqlstate(original: object) -> str | None:
    state = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    return state if isinstance(state, str) and len(state) == 5 else None


def _sqlite_transient(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _SQLITE_TRANSIENT
    # Python before 3.11 gives no code: its classes are the best left.
    return isinstance(exc, sqlite3.OperationalError)


# What each driver says when the server will not speak TLS: asyncpg's
# ConnectionError, libpq's message under psycopg, asyncmy's handshake read as
# TLS while the server answered in plain text, and db/engine.py's own check
# for aiomysql (which would go on without TLS).
_TLS_REFUSALS = (
    "rejected SSL upgrade",
    "server does not support SSL",
    "[SSL: WRONG_VERSION_NUMBER]",
    TLS_NOT_SET_UP,
)


def is_tls_refused(exc: BaseException) -> bool:
    """True when the server offers no TLS and the URL requires it.

    Waiting never cures it, unlike the connection errors it looks like: the
    setting must change, on the server or in the URL.
    """
    seen: BaseException | None = exc
    for _ in range(4):  # the driver's error, possibly wrapped by SQLAlchemy
        if seen is None:
            return False
        if any(text in str(seen) for text in _TLS_REFUSALS):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False


def tls_refused_error(url: URL) -> ConfigurationError:
    """The error that tells how to fix a TLS refusal (``is_tls_refused``)."""
    if url.get_backend_name() == "postgresql":
        server, fix = (
            "PostgreSQL",
            (
                "turn ssl on in the server's postgresql.conf, or use sslmode=prefer "
                "(TLS when the server offers it) or sslmode=disable"
            ),
        )
    else:
        server, fix = "MySQL/MariaDB", "turn TLS on in the server, or use ssl-mode=DISABLED"
    return ConfigurationError(
        f"the {server} server at {url.host}:{url.port or 'default port'} does not offer TLS, "
        f"and the database URL requires it: {fix}"
    )
