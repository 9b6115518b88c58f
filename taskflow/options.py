"""Checks on ``TaskManager``'s numeric options, made when the manager is built.

A wrong value should fail where the application constructs its manager, with
the option's name in the message, rather than minutes later as a heartbeat
that never fires or a shutdown that never waits.  The one rule that ties two
options together (the lease must outlast two heartbeats) lives here too.
"""

from __future__ import annotations

from taskflow.exceptions import ConfigurationError
from taskflow.settings import DatabaseTarget

# The group commit's pause under load (see commit_interval_for).
SQLITE_FILE_COMMIT_INTERVAL = 0.010
SERVER_COMMIT_INTERVAL = 0.002


def check_positive(name: str, value: float) -> None:
    """Raise ``ConfigurationError`` unless ``value`` is a number above zero (bools are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive number, got {value!r}")


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise ``ConfigurationError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        allowed = ", ".join(repr(choice) for choice in choices)
        raise ConfigurationError(f"{name} must be one of {allowed}, got {value!r}")


def check_not_negative(name: str, value: float) -> None:
    """Raise ``ConfigurationError`` when a duration in seconds is below zero."""
    if value < 0:
        raise ConfigurationError(f"{name} must be >= 0 seconds, got {value}")


def check_limits(**limits: int | None) -> None:
    """Each concurrency limit is either None (no limit of its own) or positive."""
    for name, value in limits.items():
        if value is not None:
            check_positive(name, value)


def heartbeat_interval_for(lease_seconds: float, heartbeat_interval: float | None) -> float:
    """The heartbeat interval to use: as given, or a quarter of the lease by default.

    Raises:
        ConfigurationError: it is not positive, or the lease is shorter than two
            heartbeats (one late heartbeat would then let another instance take
            over tasks that are still running here).
    """
    if heartbeat_interval is None:
        heartbeat_interval = lease_seconds / 4
    check_positive("heartbeat_interval", heartbeat_interval)
    if lease_seconds < 2 * heartbeat_interval:
        raise ConfigurationError(
            f"lease_seconds ({lease_seconds}) must be at least twice heartbeat_interval "
            f"({heartbeat_interval}): one late heartbeat would otherwise let another "
            "instance take over tasks that are still running here"
        )
    return heartbeat_interval


def commit_interval_for(target: DatabaseTarget, commit_interval: float | None) -> float:
    """The group commit's pause under load: as given, or chosen by where commits run.

    A SQLite file is written on the event-loop thread (``repository/sql/sqlite_writer.py``),
    so each commit's fixed cost (the WAL frames of every touched index page,
    now and then a checkpoint) is taken from the requests being served.
    Measured with ``benchmarks/request_overhead.py``: at 2 ms about five tasks
    shared a commit and writing cost about 105 µs per task; at 10 ms about 25
    shared it and it cost about 63 µs.  A PostgreSQL or MySQL commit is awaited
    while the loop serves requests, and the next batch fills meanwhile, so a
    short pause is enough there.  An idle writer commits at once either way.
    """
    if commit_interval is None:
        if target.backend == "sqlite" and not target.is_memory:
            return SQLITE_FILE_COMMIT_INTERVAL
        return SERVER_COMMIT_INTERVAL
    check_positive("commit_interval", commit_interval)
    if commit_interval > 1.0:
        raise ConfigurationError(
            f"commit_interval is in seconds and at most 1.0, got {commit_interval}: "
            "every task would wait that long to start under load"
        )
    return commit_interval
