"""``due_time`` and ``fire_time``: what run_at= / delay= mean, and what they refuse."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from taskflow.exceptions import TaskArgumentError
from taskflow.runtime.timing import as_utc, due_time, fire_time, take_time_options

NOW = datetime(2026, 12, 8, 12, 0, tzinfo=timezone.utc)
PLUS_ONE = timezone(timedelta(hours=1))


def test_nothing_given_means_at_once() -> None:
    assert due_time(None, None, NOW) is None


def test_delay_in_seconds_or_timedelta() -> None:
    assert due_time(None, 2.5, NOW) == NOW + timedelta(seconds=2.5)
    assert due_time(None, timedelta(minutes=1), NOW) == NOW + timedelta(minutes=1)
    assert due_time(None, 0, NOW) is None  # now: no different from a plain task


def test_run_at_is_kept_as_utc_and_a_past_one_runs_at_once() -> None:
    local = datetime(2026, 12, 8, 14, 0, tzinfo=PLUS_ONE)
    assert due_time(local, None, NOW) == NOW + timedelta(hours=1)
    assert due_time(NOW - timedelta(days=1), None, NOW) is None


@pytest.mark.parametrize(
    ("run_at", "delay", "message"),
    [
        (NOW, 1, "not both"),
        (datetime(2026, 12, 9), None, "timezone-aware"),
        ("2026-12-09", None, "must be a datetime"),
        (None, -0.1, "0 or more"),
        (None, float("inf"), "finite"),
        (None, "5", "number of seconds"),
        (None, True, "number of seconds"),
        (None, 4e9, "century"),
        (NOW + timedelta(days=40000), None, "century"),
    ],
)
def test_refusals_say_what_to_do(run_at: object, delay: object, message: str) -> None:
    with pytest.raises(TaskArgumentError, match=message):
        due_time(run_at, delay, NOW)


def test_schedule_once_takes_naive_as_utc_and_clamps_the_past() -> None:
    assert fire_time(datetime(2026, 12, 9), NOW) == datetime(2026, 12, 9, tzinfo=timezone.utc)
    assert fire_time(NOW - timedelta(hours=1), NOW) == NOW
    with pytest.raises(TaskArgumentError, match="datetime"):
        fire_time(5, NOW)
    assert as_utc(datetime(2026, 12, 9), "before").tzinfo is timezone.utc


def takes_delay(address: str, delay: int = 0) -> None: ...


def plain(address: str, **rest: object) -> None: ...


def test_time_options_are_left_to_a_function_that_takes_them() -> None:
    kwargs: dict[str, object] = {"address": "a", "delay": 5, "run_at": NOW}
    assert take_time_options(takes_delay, kwargs) == {"run_at": NOW}
    assert kwargs == {"address": "a", "delay": 5}
    kwargs = {"address": "a", "delay": 5}
    # **rest does not count: a delay= given to such a function is the option.
    assert take_time_options(plain, kwargs) == {"delay": 5}
    assert kwargs == {"address": "a"}
