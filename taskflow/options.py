"""Checks on ``TaskManager``'s numeric options, made when the manager is built.

A wrong value should fail where the application constructs its manager, with
the option's name in the message, rather than minutes later as a heartbeat
that never fires or a shutdown that never waits.  The one rule that ties two
options together (the lease must outlast two heartbeats) lives here too.
"""

from __future__ import annotations

from taskflow.exceptions import ConfigurationError


def check_positive(name: str, value: float) -> None:
    """Raise ``ConfigurationError`` unless ``value`` is a number above zero (bools are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive number, got {value!r}")


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
