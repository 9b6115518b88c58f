"""The observers and loggers under the module path the described system uses.

They live in ``taskflow.observe``; this module keeps ``from
taskflow.loggers import FileLogger`` working for code written against it.
"""

from __future__ import annotations

from taskflow.observe import (
    FileLogger,
    InMemoryLogger,
    LifecycleEvent,
    LogEvent,
    LoggerChain,
    StdoutLogger,
    TaskObserver,
)

__all__ = [
    "FileLogger",
    "InMemoryLogger",
    "LifecycleEvent",
    "LogEvent",
    "LoggerChain",
    "StdoutLogger",
    "TaskObserver",
]
