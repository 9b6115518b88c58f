"""Tasks for later: when ``run_at=`` / ``delay=`` say a task runs, and waking in time for it.

A task for later is a ``pending`` row with that ``run_at`` and no owner,
written now like any task.  It is not held in the process that added it: the
claims of whichever instance is free when it comes due run it (the claim
takes only rows whose ``run_at`` has passed), so a restart loses nothing and
any instance may run it.  An idle instance polls for due rows at least every
``poll_interval``, which bounds how late such a task starts; the instance
that added it also sets an alarm for its time, so it usually starts on time.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from taskflow.exceptions import TaskArgumentError
from taskflow.models import utcnow

# The furthest ahead a task may be put (about a century): further is surely
# a unit mistake (milliseconds for seconds), and near datetime's own limit.
MAX_AHEAD = timedelta(days=36525)
# Alarms further ahead than this are left to the claim poll: a process with
# many tasks for next month should not hold a timer for each.
ALARM_HORIZON_S = 300.0


# Options added after fastapi-taskflow's: taken from a call's keyword
# arguments only when the task function has no parameter of that name, so an
# existing task with a ``delay`` parameter keeps receiving it.
TIME_OPTIONS = ("run_at", "delay")


def take_time_options(func: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Remove ``run_at=`` / ``delay=`` from ``kwargs`` unless ``func`` takes them itself."""
    return {
        name: kwargs.pop(name)
        for name in TIME_OPTIONS
        if name in kwargs and not _takes_keyword(func, name)
    }


def _takes_keyword(func: Callable[..., Any], name: str) -> bool:
    try:
        return _cached_takes_keyword(func, name)
    except TypeError:  # an unhashable callable: read its signature each time
        return _signature_takes(func, name)


@functools.lru_cache(maxsize=256)
def _cached_takes_keyword(func: Callable[..., Any], name: str) -> bool:
    return _signature_takes(func, name)


def _signature_takes(func: Callable[..., Any], name: str) -> bool:
    try:
        parameters = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    parameter = parameters.get(name)
    return parameter is not None and parameter.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


def due_time(run_at: Any, delay: Any, now: datetime) -> datetime | None:
    """When a task given ``run_at=`` or ``delay=`` runs; None for at once (also for a past time).

    Raises:
        TaskArgumentError: both given, a naive or non-datetime ``run_at``, a
            negative, non-finite or non-numeric ``delay``, or a time more than
            a century away.
    """
    if run_at is None and delay is None:
        return None
    if run_at is not None and delay is not None:
        raise TaskArgumentError(
            "pass run_at= (a time) or delay= (seconds from now), not both: "
            "they would disagree about when the task runs"
        )
    when = _after_delay(delay, now) if delay is not None else _aware(run_at, naive_is_utc=False)
    _check_ahead(when, now)
    return when if when > now else None


def fire_time(run_at: Any, now: datetime) -> datetime:
    """``schedule_once()``'s ``run_at``: naive means UTC (as in fastapi-taskflow); past means now.

    Raises:
        TaskArgumentError: not a datetime, or more than a century away.
    """
    when = _aware(run_at, naive_is_utc=True)
    _check_ahead(when, now)
    return max(when, now)


def as_utc(value: Any, option: str) -> datetime:
    """A datetime bound (``list_scheduled(before=)``) in UTC; naive means UTC.

    Raises:
        TaskArgumentError: not a datetime.
    """
    if not isinstance(value, datetime):
        raise TaskArgumentError(f"{option} must be a datetime, got {type(value).__name__}")
    return _aware(value, naive_is_utc=True)


def _after_delay(delay: Any, now: datetime) -> datetime:
    if isinstance(delay, timedelta):
        seconds = delay.total_seconds()
    elif isinstance(delay, (int, float)) and not isinstance(delay, bool):
        seconds = float(delay)
    else:
        raise TaskArgumentError(
            f"delay must be a number of seconds (or a timedelta), got {type(delay).__name__}"
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise TaskArgumentError(
            f"delay must be a finite number of seconds, 0 or more, got {delay!r}: "
            "for a task that runs at once, leave delay= out"
        )
    if seconds > MAX_AHEAD.total_seconds():
        raise TaskArgumentError(_too_far(f"delay={delay!r}"))
    return now + timedelta(seconds=seconds)


def _aware(run_at: Any, *, naive_is_utc: bool) -> datetime:
    if not isinstance(run_at, datetime):
        raise TaskArgumentError(
            f"run_at must be a datetime, got {type(run_at).__name__}: "
            "for a number of seconds from now, pass delay= instead"
        )
    if run_at.tzinfo is None or run_at.utcoffset() is None:
        if not naive_is_utc:
            raise TaskArgumentError(
                "run_at must be timezone-aware, or its instant is ambiguous: pass e.g. "
                "datetime.now(timezone.utc) + timedelta(hours=1), or "
                "run_at.replace(tzinfo=timezone.utc) if it is a UTC time"
            )
        run_at = run_at.replace(tzinfo=timezone.utc)
    aware: datetime = run_at.astimezone(timezone.utc)
    return aware


def _check_ahead(when: datetime, now: datetime) -> None:
    if when - now > MAX_AHEAD:
        raise TaskArgumentError(_too_far(f"run_at={when.isoformat()}"))


def _too_far(what: str) -> str:
    return (
        f"{what} is more than a century away: check its unit (delay= is in seconds, "
        "not milliseconds)"
    )


class WakeAlarm:
    """Wakes the claim loop when the soonest task this instance put off comes due.

    One timer at a time, for the soonest time it was asked for; a later
    time asked meanwhile is found by the poll (at most ``poll_interval``
    late).  Lives on the event loop's thread.
    """

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._handle: asyncio.TimerHandle | None = None
        self._at: datetime | None = None

    def set(self, when: datetime) -> None:
        """Wake the claims at ``when`` (at once if it has passed)."""
        delay = (when - utcnow()).total_seconds()
        if delay <= 0:
            self._wake()
            return
        if delay > ALARM_HORIZON_S:
            return
        if self._handle is not None and self._at is not None and self._at <= when:
            return
        self.cancel()
        self._at = when
        self._handle = asyncio.get_running_loop().call_later(delay, self._ring)

    def cancel(self) -> None:
        """Drop the timer (the runtime stops)."""
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._at = None

    def _ring(self) -> None:
        self._handle = None
        self._at = None
        self._wake()
