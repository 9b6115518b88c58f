"""Observers: structured log and lifecycle events for loggers, metrics and tracing."""

from taskflow.observe.events import LifecycleEvent, LogEvent
from taskflow.observe.loggers import FileLogger, InMemoryLogger, StdoutLogger
from taskflow.observe.observer import LoggerChain, TaskObserver

__all__ = [
    "FileLogger",
    "InMemoryLogger",
    "LifecycleEvent",
    "LogEvent",
    "LoggerChain",
    "StdoutLogger",
    "TaskObserver",
]
