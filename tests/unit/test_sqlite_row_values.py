"""The inline SQLite writer's own value conversions agree with SQLAlchemy's."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy.dialects import sqlite

from taskflow.db.types import UTCDateTime
from taskflow.repository.sql.batch import BatchStatements, datetime_converter

ZONES = (timezone.utc, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8)))


def sqlalchemy_text(value: datetime) -> str:
    """What the models' UTCDateTime stores on SQLite for a datetime (the reads parse this)."""
    dialect = sqlite.dialect()
    process = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    text: str = process(value)
    return text


def test_timestamp_text_is_rfc3339_utc_of_fixed_width() -> None:
    moment = datetime(2026, 12, 7, 10, 4, 28, 864_195, tzinfo=ZONES[1])
    assert sqlalchemy_text(moment) == "2026-12-07T04:34:28.864195Z"
    assert sqlalchemy_text(moment.replace(microsecond=0)) == "2026-12-07T04:34:28.000000Z"


def test_timestamp_text_is_sqlalchemys_for_any_moment() -> None:
    convert = datetime_converter(sqlite.dialect())
    rng = random.Random(4)
    moments = [
        datetime(1, 1, 2, tzinfo=timezone.utc),  # years below 1000 keep four digits
        datetime(999, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone.utc),
        datetime(2026, 11, 23, 4, 5, 6, 0, tzinfo=timezone.utc),  # microseconds written as zeros
        datetime(2026, 11, 23, 0, 30, tzinfo=ZONES[1]),  # the previous day in UTC
    ]
    for _ in range(5000):
        moments.append(
            datetime(
                rng.randint(2, 9998),
                rng.randint(1, 12),
                rng.randint(1, 28),
                rng.randint(0, 23),
                rng.randint(0, 59),
                rng.randint(0, 59),
                rng.choice((0, rng.randint(0, 999_999))),
                tzinfo=rng.choice(ZONES),
            )
        )
    for moment in moments:
        assert convert(moment) == sqlalchemy_text(moment), moment


def test_equal_timestamps_of_a_batch_are_converted_to_the_same_text() -> None:
    statements = BatchStatements(sqlite.dialect())
    now = datetime.now(timezone.utc)
    same_moment = now.astimezone(ZONES[2])  # equal to now, another object and zone
    assert (
        statements.convert_datetime(now)
        == statements.convert_datetime(same_moment)
        == sqlalchemy_text(now)
    )
    assert statements.convert_datetime(None) is None


def test_the_repeated_hour_of_a_clock_change_is_two_instants() -> None:
    """Equal as datetimes (same zone, fold ignored), yet an hour apart: never one cached text."""
    statements = BatchStatements(sqlite.dialect())
    new_york = ZoneInfo("America/New_York")
    first = datetime(2025, 11, 2, 1, 30, tzinfo=new_york)  # EDT, 05:30 UTC
    second = first.replace(fold=1)  # EST, 06:30 UTC
    assert first == second
    assert (
        statements.convert_datetime(first)
        == sqlalchemy_text(first)
        == "2025-11-02T05:30:00.000000Z"
    )
    assert (
        statements.convert_datetime(second)
        == sqlalchemy_text(second)
        == "2025-11-02T06:30:00.000000Z"
    )
