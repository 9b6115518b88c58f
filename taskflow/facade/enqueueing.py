"""``enqueue()``'s options, kept apart from the task's own arguments for type checkers.

A ``ParamSpec`` signature checks a call's arguments against the task
function, but it leaves no room for options next to them (PEP 612 allows
no keyword-only parameter between ``*args: P.args`` and ``**kwargs:
P.kwargs``).  So the options are also reachable through
``task_manager.with_options(...)``, whose ``enqueue`` passes every keyword
argument to the task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec

from taskflow.runtime.timing import take_time_options

if TYPE_CHECKING:
    from taskflow.manager import TaskManager

P = ParamSpec("P")

# The options ``enqueue()`` still takes from among the task's keyword arguments.
ENQUEUE_OPTIONS = ("idempotency_key", "tags", "priority", "session")


@dataclass(frozen=True)
class EnqueueOptions:
    """How one ``enqueue()`` call is stored (see ``TaskManager.enqueue``)."""

    idempotency_key: str | None = None
    tags: dict[str, Any] | None = None
    priority: int | None = None
    session: Any = None
    run_at: datetime | None = None
    delay: float | timedelta | None = None


def take_options(func: Callable[..., Any], kwargs: dict[str, Any]) -> EnqueueOptions:
    """Remove the options from a call's keyword arguments (``run_at`` / ``delay``: see timing)."""
    options = {name: kwargs.pop(name) for name in ENQUEUE_OPTIONS if name in kwargs}
    options.update(take_time_options(func, kwargs))
    return EnqueueOptions(**options)


class EnqueueWithOptions:
    """What ``TaskManager.with_options()`` returns: its ``enqueue``, with options."""

    def __init__(self, manager: TaskManager, options: EnqueueOptions) -> None:
        self._manager = manager
        self._options = options

    async def enqueue(self, func: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> str:
        """``TaskManager.enqueue()`` with these options; every keyword argument goes to ``func``."""
        return await self._manager._enqueue_with(func, args, dict(kwargs), self._options)
