"""taskflow: FastAPI background tasks with durable SQL state, retries and a live dashboard."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

# First: refuses a directory OpenStack's TaskFlow has written into (install_check.py).
from taskflow import install_check as _install_check  # noqa: F401
from taskflow.backends import (
    MySQLBackend,
    PostgresBackend,
    RedisBackend,
    SnapshotBackend,
    SqliteBackend,
)
from taskflow.context import TaskContext, get_task_context, task_log
from taskflow.exceptions import (
    BackpressureError,
    BlockingCallError,
    CommitTimeoutError,
    ConfigurationError,
    DatabaseUnavailableError,
    FunctionNotRegisteredError,
    InvalidTransitionError,
    MissingDependencyError,
    NotStartedError,
    PayloadDecryptionError,
    RegistrationError,
    TaskArgumentError,
    TaskflowError,
    TaskNotAcknowledgedError,
    TaskNotFoundError,
    WriterStoppedError,
)
from taskflow.executors import TaskExecutionContext
from taskflow.manager import TaskManager
from taskflow.models import ScheduledOnce, TaskConfig, TaskRecord, TaskStatus
from taskflow.observe import (
    FileLogger,
    InMemoryLogger,
    LifecycleEvent,
    LogEvent,
    LoggerChain,
    StdoutLogger,
    TaskObserver,
)
from taskflow.repository.base import TaskPage, TaskQuery
from taskflow.runtime.readiness import Readiness
from taskflow.schedules import ScheduleNotFoundError, ScheduleState
from taskflow.web.admin import TaskAdmin
from taskflow.web.auth import TaskAuthBackend
from taskflow.web.background import ManagedBackgroundTasks

# The plain annotation, typed: ``from taskflow import BackgroundTasks`` in place of
# FastAPI's lets a type checker see that ``add_task()`` returns the task id.
BackgroundTasks = ManagedBackgroundTasks

try:
    __version__ = version("taskflow-sql")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "unknown"

__all__ = [
    "BackgroundTasks",
    "BackpressureError",
    "BlockingCallError",
    "CommitTimeoutError",
    "ConfigurationError",
    "DatabaseUnavailableError",
    "FileLogger",
    "FunctionNotRegisteredError",
    "InMemoryLogger",
    "InvalidTransitionError",
    "LifecycleEvent",
    "LogEvent",
    "LoggerChain",
    "ManagedBackgroundTasks",
    "MissingDependencyError",
    "MySQLBackend",
    "NotStartedError",
    "PayloadDecryptionError",
    "PostgresBackend",
    "Readiness",
    "RedisBackend",
    "RegistrationError",
    "ScheduleNotFoundError",
    "ScheduleState",
    "ScheduledOnce",
    "SnapshotBackend",
    "SqliteBackend",
    "StdoutLogger",
    "TaskAdmin",
    "TaskArgumentError",
    "TaskAuthBackend",
    "TaskConfig",
    "TaskContext",
    "TaskExecutionContext",
    "TaskManager",
    "TaskNotAcknowledgedError",
    "TaskNotFoundError",
    "TaskObserver",
    "TaskPage",
    "TaskQuery",
    "TaskRecord",
    "TaskStatus",
    "TaskflowError",
    "WriterStoppedError",
    "__version__",
    "get_task_context",
    "task_log",
]
