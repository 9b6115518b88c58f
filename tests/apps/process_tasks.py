"""Task functions for the process executor tests, importable by spawned worker processes.

Kept apart from the test modules so that a worker imports only this small
module (and taskflow), not pytest and the test's fixtures.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from taskflow import get_task_context, task_log


def square(n: int) -> dict[str, Any]:
    """CPU work that reports where it ran and which task it was."""
    task_log("squaring", n=n)
    context = get_task_context()
    task_log("done", level="debug")
    return {
        "square": n * n,
        "pid": os.getpid(),
        "task_id": context.task_id if context else None,
        "attempt": context.attempt if context else None,
    }


async def async_square(n: int) -> int:
    """A coroutine function runs under ``asyncio.run`` in the worker."""
    await asyncio.sleep(0)
    task_log("async in a worker")
    return n * n


def fails(message: str) -> None:
    task_log("about to fail", level="warning")
    raise ValueError(message)


class RefusedError(Exception):
    """Raised in a worker: the parent gets it back as this class, for retry_on to match."""


def refuses(reason: str) -> None:
    task_log("refusing")
    raise RefusedError(reason)


def hang(pid_file: str, marker: str) -> None:
    """Writes its pid, then sleeps far past any test; writes ``marker`` if it ever wakes."""
    task_log("hanging")
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(60)
    Path(marker).write_text("finished")


def hang_past_timeout(pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(60)


def sleep_then_return(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


def dies(code: int) -> None:
    """The worker process exits in the middle of the task (as a crash in native code would)."""
    os._exit(code)


def trace_position() -> dict[str, str]:
    """The trace and parent span current in the worker, as hex (empty without a trace)."""
    from opentelemetry import trace

    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return {"trace_id": "", "span_id": ""}
    return {
        "trace_id": format(span_context.trace_id, "032x"),
        "span_id": format(span_context.span_id, "016x"),
    }
