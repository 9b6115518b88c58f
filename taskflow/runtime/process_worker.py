"""What runs inside a worker process of the process executor, and how a function gets there.

Kept apart from ``processes.py`` (the web-process side) so that what a
worker imports stays small: this module, ``taskflow.context`` and
``taskflow.serialization``.  Each worker runs one task at a time; its
``task_log()`` lines go back at once through the worker's own pipe, and the
outcome (result or error, never raised through the pool) says how many
lines were sent, so the web process knows when it has them all.
"""

from __future__ import annotations

import asyncio
import inspect
import pickle
import signal
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from taskflow.context import TaskContext, bind, unbind
from taskflow.exceptions import TaskArgumentError
from taskflow.observe.tracing import attached
from taskflow.serialization import json_result

LogLine = tuple[str, str, dict[str, Any]]

# -- shipping the function -----------------------------------------------------

_shipped: dict[int, tuple[Callable[..., Any], bytes]] = {}


def ship_function(func: Callable[..., Any]) -> bytes:
    """The bytes a worker loads ``func`` from (cached per function).

    Raises:
        TaskArgumentError: the function cannot be sent to a worker process.
    """
    cached = _shipped.get(id(func))
    if cached is not None and cached[0] is func:
        return cached[1]
    try:
        import cloudpickle

        data: bytes = cloudpickle.dumps(func)
    except ImportError:
        try:
            data = pickle.dumps(func)
        except Exception as exc:
            raise TaskArgumentError(
                f"cannot send {func!r} to a worker process ({exc}): define it at module "
                "level in an importable module, or install cloudpickle "
                '(pip install "taskflow-sql[process]")'
            ) from exc
    except Exception as exc:
        raise TaskArgumentError(f"cannot send {func!r} to a worker process: {exc}") from exc
    _shipped[id(func)] = (func, data)
    return data


# -- inside the worker -----------------------------------------------------------


@dataclass
class Outcome:
    """What a worker sends back: the result or the error, and the task's log lines."""

    ok: bool
    result: Any = None
    error: BaseException | None = None
    worker_traceback: str = ""
    lines_sent: int = 0  # through the log pipe
    logs: list[LogLine] = field(default_factory=list)  # only when there is no pipe


class WorkerTraceback(Exception):
    """The traceback of an exception raised in a worker process (the ``__cause__``)."""

    def __str__(self) -> str:
        return f"\n\nin the worker process:\n{self.args[0]}"


_log_pipe: Connection | None = None


def init_worker(log_pipe: Connection | None) -> None:
    global _log_pipe
    _log_pipe = log_pipe
    # Ctrl-C reaches the whole process group.  The parent decides what happens
    # to running tasks (wait process_shutdown_timeout, then terminate): a worker
    # must not die on its own with a KeyboardInterrupt in the middle of a task.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _send_line(pipe: Connection, line: LogLine) -> None:
    try:
        pipe.send(line)
    except (pickle.PicklingError, TypeError, AttributeError):
        level, message, extra = line
        pipe.send((level, message, {key: repr(value) for key, value in extra.items()}))


def run_in_worker(
    shipped: bytes,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    context: tuple[str, str, int, dict[str, str]],
    trace_carrier: dict[str, str] | None = None,
) -> Outcome:
    """Call the task in this worker, with its context, a log sink and the trace context bound."""
    buffered: list[LogLine] = []
    sent = 0
    pipe = _log_pipe

    def sink(level: str, message: str, extra: dict[str, Any]) -> None:
        nonlocal sent
        if pipe is None:
            buffered.append((level, message, extra))
            return
        _send_line(pipe, (level, message, extra))
        sent += 1

    tokens = bind(TaskContext(*context), sink)
    try:
        func = pickle.loads(shipped)
        with attached(trace_carrier):
            result = func(*args, **kwargs)
            if inspect.isawaitable(result):
                result = asyncio.run(_await(result))
        return Outcome(ok=True, result=json_result(result), lines_sent=sent, logs=buffered)
    except BaseException as exc:
        error = exc if isinstance(exc, Exception) else RuntimeError(repr(exc))
        try:
            pickle.dumps(error)
        except Exception:
            error = RuntimeError(f"{type(exc).__name__}: {exc}")
        trace = traceback.format_exc()
        return Outcome(False, None, error, trace, lines_sent=sent, logs=buffered)
    finally:
        unbind(tokens)


async def _await(awaitable: Any) -> Any:
    return await awaitable
