"""What code inside a running task can ask: its context, and ``task_log()``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

from taskflow.models import LOG_LEVELS

LogSink = Callable[[str, str, dict[str, Any]], None]
Tokens = tuple[Token["TaskContext | None"], Token["LogSink | None"]]

_fallback_logger = logging.getLogger("taskflow.task")
_task_context: ContextVar[TaskContext | None] = ContextVar("taskflow_task_context", default=None)
_log_sink: ContextVar[LogSink | None] = ContextVar("taskflow_log_sink", default=None)


@dataclass(frozen=True)
class TaskContext:
    """The running task, as seen from inside it: id, name, 0-based attempt and tags."""

    task_id: str
    func_name: str
    attempt: int
    tags: dict[str, str] = field(default_factory=dict)


def get_task_context() -> TaskContext | None:
    """The context of the task running in this code path, or None outside any task."""
    return _task_context.get()


def task_log(message: str, *, level: str = "info", **extra: Any) -> None:
    """Record a log line on the running task (stored per attempt, shown by the dashboard).

    Outside a task the line goes to the stdlib logger ``taskflow.task``.
    """
    if level not in LOG_LEVELS:
        raise ValueError(f"level must be one of {LOG_LEVELS}, got {level!r}")
    sink = _log_sink.get()
    if sink is None:
        _fallback_logger.log(logging.getLevelName(level.upper()), "%s", message)
        return
    sink(level, str(message), extra)


def bind(context: TaskContext, sink: LogSink) -> Tokens:
    """Set the task context and log sink in the current ``contextvars`` context."""
    return (_task_context.set(context), _log_sink.set(sink))


def unbind(tokens: Tokens) -> None:
    """Undo ``bind``."""
    context_token, sink_token = tokens
    _log_sink.reset(sink_token)
    _task_context.reset(context_token)
