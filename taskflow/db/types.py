"""Column types whose behaviour must be identical on every dialect."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

# SQLite has no timestamp type: the text is the value, and SQL compares it as
# text.  RFC 3339 in UTC with all six fraction digits and a "Z" has a fixed
# width, so text order is time order, it is the form the API shows, and
# SQLite's own date functions read it.  (Before revision 0007 the text was
# "YYYY-MM-DD HH:MM:SS.ffffff"; reads accept both.)
SQLITE_STORAGE_FORMAT = (
    "%(year)04d-%(month)02d-%(day)02dT%(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06dZ"
)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always UTC and always timezone-aware in Python.

    SQLite and MySQL have no zone-aware type, so UTC is stored there (as
    ``2026-12-07T09:49:19.732562Z`` text on SQLite, naive ``DATETIME(6)`` on
    MySQL); PostgreSQL gets ``timestamptz``.  Either way Python sees aware UTC
    values, so no caller ever compares naive with aware datetimes.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.TIMESTAMP(timezone=True))
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        if dialect.name == "sqlite":
            # No regexp: reads go through datetime.fromisoformat, which takes
            # this form and the one older revisions wrote.
            stored = sqlite.DATETIME(storage_format=SQLITE_STORAGE_FORMAT)  # type: ignore[no-untyped-call]
            return dialect.type_descriptor(stored)
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: taskflow stores timezone-aware UTC only")
        value = value.astimezone(timezone.utc)
        if dialect.name == "postgresql":
            return value
        return value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)
