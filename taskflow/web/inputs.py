"""Checks of the admin API's inputs that FastAPI's own validation cannot express.

Every route runs its text, time and cursor parameters through these before
touching the database, so a malformed value is a 422 that says what to send
instead of an error deep inside a driver (PostgreSQL refuses NUL in text,
every driver refuses a lone surrogate, a time near the ends of the calendar
overflows once converted to UTC).  The errors have the shape of FastAPI's
own (``HTTPValidationError``), so clients parse one kind of 422.

The failing value is never echoed back: it may not even be encodable as
UTF-8, which is what the response must be.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Literal

from fastapi import HTTPException

from taskflow.repository.cursor import InvalidCursorError, decode_cursor

Where = Literal["query", "path", "body"]

EARLIEST = datetime.min.replace(tzinfo=timezone.utc)
LATEST = datetime.max.replace(tzinfo=timezone.utc)
TIME_RANGE = "between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z"


def invalid(where: Where, name: str | int, message: str, *loc: str | int) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors, for ``where``/``name``."""
    error = {"type": "value_error", "loc": [where, name, *loc], "msg": message}
    return HTTPException(422, detail=[error])


def _flaw(value: str) -> str | None:
    if "\x00" in value:
        return "must not contain NUL characters (\\x00)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text (it contains a lone surrogate such as \\ud800)"
    return None


def text(value: str, name: str, where: Where = "query") -> str:
    """``value`` when a database can compare it; else a 422 naming ``name``."""
    flaw = _flaw(value)
    if flaw is not None:
        raise invalid(where, name, f"{name} {flaw}")
    return value


def optional_text(value: str | None, name: str, where: Where = "query") -> str | None:
    """``text`` for an optional parameter (None passes)."""
    return None if value is None else text(value, name, where)


def texts(values: Sequence[str], name: str, where: Where = "body") -> list[str]:
    """``text`` for each item of a list; the error names the item's position."""
    for index, value in enumerate(values):
        flaw = _flaw(value)
        if flaw is not None:
            raise invalid(where, name, f"{name}[{index}] {flaw}", index)
    return list(values)


def moment(value: datetime | None, name: str) -> datetime | None:
    """An aware time as UTC, or a 422 when it has no zone or UTC cannot hold it."""
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise invalid("query", name, f"{name} needs a timezone, e.g. 2026-01-31T12:00:00Z")
    try:
        return value.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        raise invalid(
            "query", name, f"{name} must be {TIME_RANGE} once in UTC; got {value.isoformat()}"
        ) from None


def cursor(value: str | None, name: str = "cursor") -> str | None:
    """A page cursor taskflow made, checked before any query runs."""
    if not value:
        return None
    try:
        decode_cursor(value)
    except InvalidCursorError as exc:
        raise invalid("query", name, str(exc)) from None
    return value
