"""Database errors read by their code, per dialect: retried when transient, never when about data.

The exceptions are built as the drivers raise them (PyMySQL's error number
first in ``args``, asyncpg's ``sqlstate`` as SQLAlchemy's adapter copies it,
``sqlite3``'s result code), then wrapped as SQLAlchemy wraps them.
"""

from __future__ import annotations

import sqlite3

import psycopg
import psycopg.errors
import pymysql
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, StatementError

from taskflow.repository.sql.errors import is_deadlock, is_tls_refused, is_transient


def wrapped(original: BaseException, kind: type[DBAPIError] = OperationalError) -> DBAPIError:
    return kind("INSERT ...", {}, original)


class PgError(Exception):
    """What SQLAlchemy's asyncpg adapter raises: the server's SQLSTATE as ``sqlstate``."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"state {sqlstate}")
        self.sqlstate = sqlstate


def sqlite_error(code: int) -> sqlite3.Error:
    error = sqlite3.OperationalError("refused")
    error.sqlite_errorcode = code  # type: ignore[attr-defined]
    return error


@pytest.mark.parametrize(
    ("number", "transient"),
    [
        (4025, False),  # CHECK constraint (MariaDB's JSON_VALID on a lone surrogate)
        (1366, False),  # incorrect string value
        (1406, False),  # data too long
        (1153, False),  # packet bigger than max_allowed_packet
        (2013, True),  # lost connection during query
        (2006, True),  # server has gone away
        (1213, True),  # deadlock
        (1205, True),  # lock wait timeout
    ],
)
def test_mysql_errors_are_read_by_number(number: int, transient: bool) -> None:
    error = wrapped(pymysql.err.OperationalError(number, "message"))
    assert is_transient(error) is transient


@pytest.mark.parametrize(
    ("state", "transient"),
    [
        ("22021", False),  # NUL in text: character not in repertoire
        ("22P05", False),  # untranslatable character (NUL in JSON)
        ("22P02", False),  # invalid JSON text
        ("23505", False),  # unique violation
        ("54000", False),  # program limit exceeded
        ("08006", True),  # connection failure
        ("57P01", True),  # admin shutdown
        ("53300", True),  # too many connections
        ("40P01", True),  # deadlock
        ("40001", True),  # serialization failure
        ("55P03", True),  # lock not available
    ],
)
def test_postgres_errors_are_read_by_sqlstate(state: str, transient: bool) -> None:
    assert is_transient(wrapped(PgError(state))) is transient
    assert is_transient(wrapped(PgError(state), IntegrityError)) is transient


@pytest.mark.parametrize(
    ("code", "transient"),
    [(5, True), (6, True), (517, True), (10, True), (18, False), (19, False), (2067, False)],
)
def test_sqlite_errors_are_read_by_result_code(code: int, transient: bool) -> None:
    assert is_transient(wrapped(sqlite_error(code))) is transient
    assert is_transient(sqlite_error(code)) is transient  # the inline writer's own errors


def test_errors_converting_a_value_are_about_the_data() -> None:
    encoding = UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
    assert not is_transient(encoding)
    assert not is_transient(StatementError("bad value", "INSERT ...", {}, encoding))
    assert not is_transient(ValueError("Out of range float values are not JSON compliant"))


def test_lost_connections_are_transient_whatever_their_wrapping() -> None:
    assert is_transient(ConnectionResetError(104, "reset"))
    assert is_transient(wrapped(ConnectionRefusedError(111, "refused")))
    assert is_transient(TimeoutError())


def test_deadlocks_are_told_apart() -> None:
    assert is_deadlock(wrapped(pymysql.err.OperationalError(1213, "deadlock")))
    assert is_deadlock(wrapped(PgError("40P01")))
    assert not is_deadlock(wrapped(PgError("55P03")))
    assert not is_deadlock(wrapped(pymysql.err.OperationalError(2013, "lost")))


# -- psycopg 3: its own exception classes, SQLSTATE as ``sqlstate`` --------------------


@pytest.mark.parametrize(
    ("error_class", "transient", "deadlock"),
    [
        ("UniqueViolation", False, False),
        ("CheckViolation", False, False),
        ("UntranslatableCharacter", False, False),
        ("AdminShutdown", True, False),
        ("CannotConnectNow", True, False),
        ("LockNotAvailable", True, False),
        ("SerializationFailure", True, True),
        ("DeadlockDetected", True, True),
    ],
)
def test_psycopg_errors_are_read_by_sqlstate(
    error_class: str, transient: bool, deadlock: bool
) -> None:
    error = wrapped(getattr(psycopg.errors, error_class)("message"))
    assert is_transient(error) is transient
    assert is_deadlock(error) is deadlock


def test_psycopg_connection_failure_without_sqlstate_is_transient() -> None:
    refused = psycopg.OperationalError("connection failed: Connection refused")
    assert is_transient(wrapped(refused))


def test_a_tls_refusal_is_recognised_through_the_wrapping() -> None:
    assert is_tls_refused(ConnectionError('PostgreSQL server at "db:5432" rejected SSL upgrade'))
    assert is_tls_refused(wrapped(Exception("server does not support SSL, but SSL was required")))
    assert not is_tls_refused(wrapped(Exception("Connection refused")))
