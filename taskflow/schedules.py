"""Schedules: triggers (interval and cron), their validation, and the shared entry types.

Plain Python, no I/O: the scheduler (``taskflow.runtime.scheduler``) and the
repository both use these types.  Times are timezone-aware UTC throughout;
a cron expression is read in its own IANA timezone.

Daylight saving time, for cron: a wall-clock time that does not exist (the
hour skipped in spring) fires at the first instant after the gap, so it is
never skipped; a wall-clock time that exists twice (the hour repeated in
autumn) fires once, at its first occurrence, unless the expression runs every
hour (``* * * * *``, ``0 * * * *``...), which keeps running through the
repeated hour as it does through any other.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal

from taskflow.exceptions import RegistrationError, TaskflowError, missing_extra

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from taskflow.registry import RegisteredTask

CatchUp = Literal["once", "all"]
CATCH_UP_POLICIES: tuple[str, ...] = ("once", "all")
MIN_INTERVAL = timedelta(milliseconds=1)  # the scheduler wakes with 1 ms granularity
ONE_US = timedelta(microseconds=1)
# How far back a cron search starts near a change of UTC offset: a wall-clock
# time just before ``moment`` may still fire after it (a repeated hour).
DST_LOOKBACK = timedelta(hours=3)
MAX_CRON_STEPS = 10_000
CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


class ScheduleNotFoundError(TaskflowError, LookupError):
    """No schedule has that name in the database."""


class FireOutcome(str, enum.Enum):
    """What happened when an instance tried to fire a slot."""

    FIRED = "fired"  # this instance won the slot and inserted its task
    LOST = "lost"  # another instance fired it first, or the schedule is paused
    DUPLICATE = "duplicate"  # won the slot, but a task for it existed already (none added)


@dataclass(frozen=True)
class IntervalTrigger:
    """Every ``every``, on a grid anchored at the schedule's first slot (no drift).

    ``next_slot`` gives the slot after ``slot`` fired at ``now``: the first one
    after now (``catch_up="once"``), or the one right after ``slot`` (``"all"``,
    so missed slots fire one by one); ``CronTrigger`` answers the same.
    """

    every: timedelta

    @property
    def description(self) -> str:
        return f"every {self.every.total_seconds():g}s"

    @property
    def every_seconds(self) -> float:
        return self.every.total_seconds()

    def next_after(self, moment: datetime) -> datetime:
        return moment + self.every

    def next_slot(self, slot: datetime, now: datetime, catch_up: CatchUp) -> datetime:
        if catch_up == "all" or now < slot:
            return slot + self.every
        # Whole microseconds, so every instance computes the same grid exactly.
        steps = (now - slot) // self.every + 1
        return slot + self.every * steps


class CronTrigger:
    """A five-field cron expression evaluated in an IANA timezone (see the module's DST rules)."""

    def __init__(self, expression: str, zone: str = "UTC") -> None:
        self.expression = expression
        self.timezone = zone
        self._zone = load_zone(zone)
        self._croniter = _croniter()
        hours = self._croniter(expression).expanded[1]
        self._every_hour = hours == ["*"] or set(hours) == set(range(24))

    @property
    def description(self) -> str:
        return self.expression if self.timezone == "UTC" else f"{self.expression} ({self.timezone})"

    def __repr__(self) -> str:
        return f"CronTrigger({self.expression!r}, {self.timezone!r})"

    def next_after(self, moment: datetime) -> datetime:
        utc_moment = moment.astimezone(timezone.utc)
        local = utc_moment.astimezone(self._zone).replace(tzinfo=None)
        offset = self._offset(utc_moment)
        near_change = (
            self._offset(utc_moment - DST_LOOKBACK) != offset
            or self._offset(utc_moment + DST_LOOKBACK) != offset
        )
        start = local - DST_LOOKBACK if near_change else local
        candidates = self._croniter(self.expression, start)
        best: datetime | None = None
        for _ in range(MAX_CRON_STEPS):
            wall = candidates.get_next(datetime)
            first, second = self._instants(wall)
            for instant in (first, second):
                if instant is None or instant <= utc_moment:
                    continue
                if best is None or instant < best:
                    best = instant
            # First instants never decrease from one wall time to the next, so
            # no later candidate can fire before this one.
            if first > utc_moment and best is not None:
                return best
        raise TaskflowError(f"cron {self.expression!r} has no firing after {moment.isoformat()}")

    def next_slot(self, slot: datetime, now: datetime, catch_up: CatchUp) -> datetime:
        return self.next_after(slot if catch_up == "all" else max(slot, now))

    def _offset(self, moment: datetime) -> timedelta | None:
        return moment.astimezone(self._zone).utcoffset()

    def _instants(self, wall: datetime) -> tuple[datetime, datetime | None]:
        """The UTC instant(s) at which wall-clock time ``wall`` fires."""
        earlier = wall.replace(tzinfo=self._zone, fold=0).astimezone(timezone.utc)
        later = wall.replace(tzinfo=self._zone, fold=1).astimezone(timezone.utc)
        if earlier == later:
            return earlier, None
        if earlier < later:  # a repeated wall time: first occurrence, and the second if hourly
            return earlier, later if self._every_hour else None
        # A wall time inside a spring-forward gap: fold=1 reads it with the new
        # offset (before the gap), fold=0 with the old one (after); the gap ends in between.
        return self._transition(later, earlier), None

    def _transition(self, low: datetime, high: datetime) -> datetime:
        """The first instant in ``(low, high]`` with ``high``'s UTC offset."""
        target = self._offset(high)
        while high - low > ONE_US:
            middle = low + (high - low) / 2
            if self._offset(middle) == target:
                high = middle
            else:
                low = middle
        return high


@dataclass(frozen=True)
class ScheduleDefinition:
    """What the code declares about a schedule: what ``taskflow_schedules`` stores of it."""

    name: str
    trigger: str
    every_seconds: float | None
    cron: str | None
    timezone: str


@dataclass(frozen=True)
class ScheduleState:
    """One row of ``taskflow_schedules``, with the status of the last task it fired."""

    name: str
    trigger: str
    every_seconds: float | None
    cron: str | None
    timezone: str
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_task_id: str | None
    paused: bool
    updated_at: datetime
    last_status: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The API's shape (fastapi-taskflow's Schedules fields, plus ours)."""
        return {
            "name": self.name,
            "func_name": self.name,
            "trigger": self.trigger,
            "every": self.every_seconds,
            "cron": self.cron,
            "timezone": self.timezone,
            "next_run": _iso(self.next_run_at),
            "last_run": _iso(self.last_run_at),
            "last_task_id": self.last_task_id,
            "last_status": self.last_status,
            "paused": self.paused,
        }


@dataclass(frozen=True)
class ScheduledEntry:
    """A function registered with ``@task_manager.schedule()`` and when it fires."""

    target: RegisteredTask
    trigger: IntervalTrigger | CronTrigger
    run_on_startup: bool = False
    catch_up: CatchUp = "once"

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def definition(self) -> ScheduleDefinition:
        trigger = self.trigger
        if isinstance(trigger, IntervalTrigger):
            return ScheduleDefinition(
                self.name, trigger.description, trigger.every_seconds, None, "UTC"
            )
        return ScheduleDefinition(
            self.name, trigger.description, None, trigger.expression, trigger.timezone
        )


def make_trigger(
    *, every: float | timedelta | None, cron: str | None, timezone: str = "UTC"
) -> IntervalTrigger | CronTrigger:
    """Validate ``@schedule``'s trigger arguments and build the trigger.

    Raises:
        RegistrationError: neither or both of ``every`` / ``cron``, a non-positive
            interval, a malformed cron expression, or an unknown timezone.
        MissingDependencyError: ``cron`` without croniter installed.
    """
    if (every is None) == (cron is None):
        raise RegistrationError(
            "@schedule needs exactly one of every=<seconds> or cron='<expression>', "
            f"got every={every!r}, cron={cron!r}"
        )
    load_zone(timezone)
    if every is not None:
        return IntervalTrigger(_interval(every))
    assert cron is not None
    return CronTrigger(_check_cron(cron), timezone)


def check_catch_up(catch_up: object) -> CatchUp:
    if catch_up == "once":
        return "once"
    if catch_up == "all":
        return "all"
    raise RegistrationError(f"catch_up must be 'once' or 'all', got {catch_up!r}")


def load_zone(name: object) -> ZoneInfo:
    """The ``ZoneInfo`` for an IANA name; a clear ``RegistrationError`` for anything else."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(name, str) or not name:
        raise RegistrationError(
            f"timezone must be an IANA name such as 'Europe/Paris', got {name!r}"
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise RegistrationError(
            f"unknown timezone {name!r}: use an IANA name such as 'UTC', 'Europe/Paris' or "
            "'America/New_York' (on Windows, install the tzdata package)"
        ) from exc


def _interval(every: object) -> timedelta:
    if isinstance(every, timedelta):
        step = every
    elif isinstance(every, (int, float)) and not isinstance(every, bool) and math.isfinite(every):
        if every <= 0:
            raise RegistrationError(f"every must be a positive number of seconds, got {every!r}")
        step = timedelta(seconds=every)
    else:
        raise RegistrationError(f"every must be a number of seconds, got {every!r}")
    if step < MIN_INTERVAL:
        raise RegistrationError(f"every must be at least 0.001 seconds (1 ms), got {every!r}")
    return step


def _check_cron(expression: object) -> str:
    if not isinstance(expression, str) or not expression.strip():
        raise RegistrationError(f"cron must be a cron expression string, got {expression!r}")
    text = " ".join(expression.split())
    croniter = _croniter()
    fields = text.split(" ")
    macro = text.startswith("@") and text.lower() in CRON_MACROS
    if not macro and len(fields) != 5:
        raise RegistrationError(
            f"cron {expression!r} must have five fields (minute hour day-of-month month "
            "day-of-week), e.g. '0 9 * * *' for 09:00 every day"
        )
    if not croniter.is_valid(text):
        raise RegistrationError(f"cron {expression!r} is not a valid cron expression")
    try:  # valid syntax can still never match (e.g. '0 0 30 2 *', February 30th)
        croniter(text, datetime(2000, 1, 1)).get_next(datetime)
    except Exception as exc:
        raise RegistrationError(f"cron {expression!r} never fires: {exc}") from exc
    return text


def _croniter() -> Any:
    try:
        from croniter import croniter
    except ImportError as exc:
        raise missing_extra("croniter", "scheduler", "a cron schedule") from exc
    return croniter


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
