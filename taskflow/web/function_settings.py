"""The registered functions and their settings, as the API and the dashboard show them.

``GET {path}/functions`` returns this list and the dashboard page embeds the
same list in its boot JSON (the "Tasks" tab), so both read one builder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskflow.models import ExceptionTypes
from taskflow.runtime.retry import exception_tuple

if TYPE_CHECKING:
    from taskflow.manager import TaskManager


def function_settings(task_manager: TaskManager) -> list[dict[str, Any]]:
    """The functions registered in this process, by name, each with its settings."""
    functions = []
    for target in sorted(task_manager.registry, key=lambda t: t.name):
        config = target.config
        functions.append(
            {
                "name": target.name,
                "retries": config.retries,
                "delay": config.delay,
                "backoff": config.backoff,
                "persist": config.persist,
                "requeue_on_interrupt": config.requeue_on_interrupt,
                "eager": config.eager,
                "priority": config.priority,
                "executor": target.executor,
                "timeout": config.timeout,
                "max_delay": config.max_delay,
                "jitter": config.jitter,
                "retry_on": None if config.retry_on is None else exception_names(config.retry_on),
                "dont_retry_on": exception_names(config.dont_retry_on),
            }
        )
    return functions


def exception_names(types: ExceptionTypes | None) -> list[str]:
    """Exception classes as a reader finds them: builtins by name, others by import path."""
    return [
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
        for kind in exception_tuple(types)
    ]
