"""Trigger math and ``@schedule`` validation, with explicit instants (a controllable clock).

DST days are walked with a fake clock the way the scheduler walks real time:
fire when the clock reaches the slot, then ask the trigger for the next slot.
"""

from __future__ import annotations

import itertools
import sys
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from taskflow import MissingDependencyError, RegistrationError, TaskManager
from taskflow.schedules import (
    CronTrigger,
    IntervalTrigger,
    ScheduledEntry,
    check_catch_up,
    make_trigger,
)

UTC = timezone.utc
NEW_YORK = ZoneInfo("America/New_York")
# 2024 in New York: clocks jump 02:00 -> 03:00 on 10 March, fall 02:00 -> 01:00 on 3 November.
SPRING = date(2024, 3, 10)
AUTUMN = date(2024, 11, 3)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def walk(trigger: Any, start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    """The slots a scheduler fires from ``start`` to ``end``, its clock ticking by ``step``."""
    fired: list[datetime] = []
    slot = trigger.next_after(start)
    now = start
    while now <= end:
        while slot <= now:  # due: fire it, then take the next slot after now
            fired.append(slot)
            slot = trigger.next_slot(slot, now, "once")
        now += step
    return fired


def gaps(slots: list[datetime]) -> set[timedelta]:
    return {later - earlier for earlier, later in itertools.pairwise(slots)}


def local_days(slots: list[datetime], zone: ZoneInfo) -> Counter[date]:
    return Counter(slot.astimezone(zone).date() for slot in slots)


# -- validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of every"),
        ({"every": 5, "cron": "* * * * *"}, "exactly one of every"),
        ({"every": 0}, "positive"),
        ({"every": -1.5}, "positive"),
        ({"every": float("nan")}, "number of seconds"),
        ({"every": True}, "number of seconds"),
        ({"every": "60"}, "number of seconds"),
        ({"every": 0.0001}, "at least 0.001"),
        ({"every": timedelta(0)}, "at least 0.001"),
        ({"cron": "61 * * * *"}, "not a valid cron"),
        ({"cron": "every day"}, "five fields"),
        ({"cron": "* * * *"}, "five fields"),
        ({"cron": "0 * * * * *"}, "five fields"),
        ({"cron": ""}, "cron expression string"),
        ({"cron": "0 0 30 2 *"}, "never fires"),
        ({"every": 60, "timezone": "Mars/Olympus_Mons"}, "unknown timezone"),
        ({"cron": "0 9 * * *", "timezone": "Not/AZone"}, "unknown timezone"),
        ({"cron": "0 9 * * *", "timezone": ""}, "IANA name"),
    ],
)
def test_bad_triggers_are_value_errors_that_say_what_is_wrong(
    kwargs: dict[str, Any], message: str
) -> None:
    kwargs.setdefault("every", None)
    kwargs.setdefault("cron", None)
    with pytest.raises(RegistrationError, match=message) as caught:
        make_trigger(**kwargs)
    assert isinstance(caught.value, ValueError)


def test_good_triggers() -> None:
    assert make_trigger(every=300, cron=None).description == "every 300s"
    assert make_trigger(every=0.25, cron=None).description == "every 0.25s"
    assert make_trigger(every=timedelta(minutes=2), cron=None).description == "every 120s"
    daily = make_trigger(every=None, cron="0  9 * * *", timezone="America/New_York")
    assert isinstance(daily, CronTrigger)
    assert daily.description == "0 9 * * * (America/New_York)"
    assert make_trigger(every=None, cron="@hourly").description == "@hourly"


def test_catch_up_policy_is_checked() -> None:
    assert check_catch_up("once") == "once"
    assert check_catch_up("all") == "all"
    with pytest.raises(RegistrationError, match="catch_up must be"):
        check_catch_up("some")


def test_cron_without_croniter_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "croniter", None)  # import croniter -> ImportError
    with pytest.raises(MissingDependencyError, match=r'pip install "taskflow-sql\[scheduler\]"'):
        make_trigger(every=None, cron="0 9 * * *")
    assert isinstance(make_trigger(every=60, cron=None), IntervalTrigger)  # interval needs nothing


def test_the_decorator_validates_and_registers_a_normal_task() -> None:
    manager = TaskManager()

    async def cleanup() -> None:
        return None

    decorated = manager.schedule(every=60, retries=2, delay=0.5, backoff=2.0)(cleanup)
    assert decorated is cleanup  # returned unchanged
    registered = manager.registry.get("cleanup")
    assert registered is not None and registered.func is cleanup
    assert (registered.config.retries, registered.config.delay) == (2, 0.5)
    assert manager.scheduler is not None
    entry = manager.scheduler.entries["cleanup"]
    assert isinstance(entry, ScheduledEntry) and entry.definition.every_seconds == 60

    def report() -> None:
        return None

    for bad in (
        {"every": 60, "cron": "0 9 * * *"},
        {"cron": "not cron"},
        {"every": 0},
        {"every": 60, "timezone": "Nowhere/Special"},
        {"every": 60, "executor": "async"},  # report is sync
        {"every": 60, "catch_up": "never"},
    ):
        with pytest.raises(ValueError):
            manager.schedule(**bad)(report)
    assert manager.registry.get("report") is None
    assert "report" not in manager.scheduler.entries


# -- intervals --------------------------------------------------------------------


def test_interval_slots_stay_on_their_grid() -> None:
    trigger = IntervalTrigger(timedelta(seconds=0.3))
    slot = utc(2024, 1, 1)
    assert trigger.next_after(slot) == slot + timedelta(seconds=0.3)
    # On time, a little late, and late by several slots (fires once, then the next one ahead).
    assert trigger.next_slot(slot, slot, "once") == utc(2024, 1, 1, 0, 0, 0, 300000)
    assert trigger.next_slot(slot, slot + timedelta(seconds=0.01), "once") == slot + timedelta(
        seconds=0.3
    )
    late = slot + timedelta(seconds=1.0)
    assert trigger.next_slot(slot, late, "once") == utc(2024, 1, 1, 0, 0, 1, 200000)
    assert trigger.next_slot(slot, late, "all") == slot + timedelta(seconds=0.3)
    # Exactly on a later grid point: that point is past, the next one is due.
    assert trigger.next_slot(slot, slot + timedelta(seconds=0.9), "once") == slot + timedelta(
        seconds=1.2
    )


def test_sub_second_interval_fires_every_slot_with_a_fake_clock() -> None:
    trigger = IntervalTrigger(timedelta(milliseconds=100))
    start = utc(2024, 1, 1)
    fired = walk(trigger, start, start + timedelta(seconds=10), timedelta(milliseconds=10))
    assert len(fired) == 100
    assert len(set(fired)) == 100
    assert gaps(fired) == {timedelta(milliseconds=100)}


def test_catch_up_after_downtime_fires_once_or_every_slot() -> None:
    trigger = IntervalTrigger(timedelta(minutes=5))
    missed = utc(2024, 1, 1, 8, 0)
    back = utc(2024, 1, 1, 9, 2)  # down for 62 minutes: 13 slots missed
    assert trigger.next_slot(missed, back, "once") == utc(2024, 1, 1, 9, 5)
    slots = [missed]
    while slots[-1] <= back:
        slots.append(trigger.next_slot(slots[-1], back, "all"))
    assert len(slots) - 1 == 13  # all: every missed slot, one after the other


# -- cron ---------------------------------------------------------------------------


def test_cron_in_utc_and_in_a_timezone() -> None:
    every_quarter = CronTrigger("*/15 * * * *")
    assert every_quarter.next_after(utc(2024, 5, 1, 10, 7)) == utc(2024, 5, 1, 10, 15)
    assert every_quarter.next_after(utc(2024, 5, 1, 10, 15)) == utc(2024, 5, 1, 10, 30)
    nine_in_new_york = CronTrigger("0 9 * * *", "America/New_York")
    assert nine_in_new_york.next_after(utc(2024, 1, 15, 12)) == utc(2024, 1, 15, 14)  # EST
    assert nine_in_new_york.next_after(utc(2024, 7, 15, 12)) == utc(2024, 7, 15, 13)  # EDT
    weekdays = CronTrigger("0 9 * * 1-5", "Europe/Paris")
    assert weekdays.next_after(utc(2024, 6, 7, 8)) == utc(2024, 6, 10, 7)  # Friday -> Monday


def test_cron_catch_up_once_skips_to_the_next_time_after_now() -> None:
    hourly = CronTrigger("0 * * * *")
    slot = utc(2024, 1, 1, 3)
    assert hourly.next_slot(slot, utc(2024, 1, 1, 7, 30), "once") == utc(2024, 1, 1, 8)
    assert hourly.next_slot(slot, utc(2024, 1, 1, 7, 30), "all") == utc(2024, 1, 1, 4)


def test_spring_forward_fires_a_daily_job_in_the_missing_hour_once() -> None:
    trigger = CronTrigger("30 2 * * *", "America/New_York")
    fired = walk(trigger, utc(2024, 3, 8, 12), utc(2024, 3, 12, 12), timedelta(minutes=1))
    assert local_days(fired, NEW_YORK) == Counter({date(2024, 3, d): 1 for d in (9, 10, 11, 12)})
    on_the_day = [s for s in fired if s.astimezone(NEW_YORK).date() == SPRING]
    # 02:30 does not exist that day: it fires when the gap ends, 03:00 EDT.
    assert on_the_day == [utc(2024, 3, 10, 7)]
    assert on_the_day[0].astimezone(NEW_YORK).hour == 3


def test_fall_back_fires_a_daily_job_in_the_repeated_hour_once() -> None:
    trigger = CronTrigger("30 1 * * *", "America/New_York")
    fired = walk(trigger, utc(2024, 11, 1, 12), utc(2024, 11, 5, 12), timedelta(minutes=1))
    assert local_days(fired, NEW_YORK) == Counter({date(2024, 11, d): 1 for d in (2, 3, 4, 5)})
    on_the_day = [s for s in fired if s.astimezone(NEW_YORK).date() == AUTUMN]
    assert on_the_day == [utc(2024, 11, 3, 5, 30)]  # 01:30 EDT, the first 01:30


@pytest.mark.parametrize(("day", "hours"), [(SPRING, 23), (AUTUMN, 25)])
def test_hourly_jobs_follow_real_hours_across_dst(day: date, hours: int) -> None:
    trigger = CronTrigger("0 * * * *", "America/New_York")
    start = datetime(day.year, day.month, day.day, tzinfo=NEW_YORK).astimezone(UTC)
    end = (datetime(day.year, day.month, day.day, tzinfo=NEW_YORK) + timedelta(days=1)).astimezone(
        UTC
    )
    fired = walk(
        trigger, start - timedelta(seconds=1), end - timedelta(seconds=1), timedelta(minutes=1)
    )
    assert len(fired) == hours == len(set(fired))
    assert gaps(fired) == {timedelta(hours=1)}


def test_frequent_jobs_collapse_the_missing_hour_into_one_firing() -> None:
    trigger = CronTrigger("*/20 * * * *", "America/New_York")
    fired = walk(trigger, utc(2024, 3, 10, 6, 30), utc(2024, 3, 10, 7, 30), timedelta(seconds=30))
    # 01:40 EST, then 02:00/02:20/02:40 (missing) and 03:00 EDT are all one instant, then 03:20.
    assert fired == [utc(2024, 3, 10, 6, 40), utc(2024, 3, 10, 7), utc(2024, 3, 10, 7, 20)]


def test_next_after_from_inside_the_repeated_hour() -> None:
    every_20 = CronTrigger("*/20 * * * *", "America/New_York")
    assert every_20.next_after(utc(2024, 11, 3, 5, 50)) == utc(
        2024, 11, 3, 6
    )  # 01:50 EDT -> 01:00 EST
    assert every_20.next_after(utc(2024, 11, 3, 6, 5)) == utc(2024, 11, 3, 6, 20)
    daily = CronTrigger("30 1 * * *", "America/New_York")
    # From the second 01:10 (EST), the second 01:30 is not a firing: the next is tomorrow's.
    assert daily.next_after(utc(2024, 11, 3, 6, 10)) == utc(2024, 11, 4, 6, 30)


@pytest.mark.parametrize(
    ("zone", "spring", "autumn"),
    [
        ("Europe/Berlin", date(2024, 3, 31), date(2024, 10, 27)),
        ("Australia/Lord_Howe", date(2024, 10, 6), date(2024, 4, 7)),  # 30-minute shifts
    ],
)
def test_daily_jobs_fire_once_per_day_through_both_transitions(
    zone: str, spring: date, autumn: date
) -> None:
    tz = ZoneInfo(zone)
    for expression in ("30 2 * * *", "0 2 * * *", "45 1 * * *"):
        trigger = CronTrigger(expression, zone)
        for day in (spring, autumn):
            start = datetime(day.year, day.month, day.day, tzinfo=tz) - timedelta(days=2)
            end = start + timedelta(days=4)
            fired = walk(trigger, start.astimezone(UTC), end.astimezone(UTC), timedelta(minutes=5))
            days = local_days(fired, tz)
            assert set(days.values()) == {1}, (zone, expression, day, fired)
            assert len(days) == 4
