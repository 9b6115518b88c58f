"""Building the manager's observer chain from its options."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from taskflow.observe.loggers import FileLogger
from taskflow.observe.observer import LoggerChain, TaskObserver


def build_observers(
    loggers: Sequence[Any], log_file: str | None, file_options: dict[str, Any]
) -> LoggerChain | None:
    """The chain for ``loggers=`` plus the ``log_file=`` shorthand, or None when there are none.

    ``log_file`` is skipped when ``loggers`` already has a ``FileLogger`` for
    the same path (fastapi-taskflow promised this and wrote lines twice).
    """
    observers: list[TaskObserver] = []
    for observer in loggers:
        if not isinstance(observer, TaskObserver):
            raise TypeError(
                f"loggers must be TaskObserver instances, got {type(observer).__name__}"
            )
        observers.append(observer)
    if log_file is not None and not any(
        isinstance(o, FileLogger) and os.path.abspath(o.path) == os.path.abspath(log_file)
        for o in observers
    ):
        observers.append(FileLogger(log_file, **file_options))
    return LoggerChain(observers) if observers else None
