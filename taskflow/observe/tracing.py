"""OpenTelemetry spans for task attempts, when OpenTelemetry is there to receive them.

Each attempt gets a span ``taskflow.task <func_name>``.  The runner starts it
inside the task's own context, which is a copy of the context of the code
that called ``add_task()``: the span of the request that added the task is
therefore its parent, and spans the task function opens are its children.
Threads get a copy of that context.  A worker process shares nothing, so the
trace context goes to it as W3C ``traceparent`` headers (``carrier_for_worker``)
and is made current there around the call (``attached``).

Nothing here costs anything unless it is used: without the
``opentelemetry-api`` package ``task_tracer()`` returns None and the runner
skips tracing with one ``is None`` check; with the API but no configured
tracer provider (the API's default proxy), no span is made.
Install with ``pip install "taskflow-sql[otel]"``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from taskflow.models import TaskRecord

SPAN_PREFIX = "taskflow.task"
RECHECK_S = 1.0


class Attempt:
    """An open span and the context token that makes it current."""

    __slots__ = ("span", "token")

    def __init__(self, span: Any, token: Any) -> None:
        self.span = span
        self.token = token


class TaskTracer:
    """Starts and ends the spans of task attempts on a tracer provider."""

    def __init__(self, provider: Any = None) -> None:
        from opentelemetry import context, trace

        self._trace = trace
        self._context = context
        self._provider = provider
        self._tracer: Any = None
        self._looked_at = -RECHECK_S

    def _current_tracer(self) -> Any:
        # Looking the global provider up costs microseconds per task; an app
        # configures it once at startup, so it is looked at once a second.
        now = time.monotonic()
        if now - self._looked_at < RECHECK_S:
            return self._tracer
        self._looked_at = now
        provider = self._provider or self._trace.get_tracer_provider()
        if isinstance(provider, (self._trace.ProxyTracerProvider, self._trace.NoOpTracerProvider)):
            self._tracer = None  # nothing configured: spans would be dropped anyway
        else:
            self._tracer = provider.get_tracer("taskflow")
        return self._tracer

    def start(self, record: TaskRecord, executor: str) -> Attempt | None:
        """Open the attempt's span (child of the current span) and make it current."""
        tracer = self._current_tracer()
        if tracer is None:
            return None
        span = tracer.start_span(
            f"{SPAN_PREFIX} {record.func_name}",
            attributes={
                "taskflow.task_id": record.task_id,
                "taskflow.func_name": record.func_name,
                "taskflow.attempt": record.retries_used,
                "taskflow.executor": executor,
            },
        )
        token = self._context.attach(self._trace.set_span_in_context(span))
        return Attempt(span, token)

    def end(self, attempt: Attempt, status: str, error: str | None) -> None:
        """Record the attempt's outcome on its span, close it and restore the context."""
        span = attempt.span
        span.set_attribute("taskflow.status", status)
        if error:
            span.set_attribute("taskflow.error", error)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, error))
        span.end()
        self._context.detach(attempt.token)


def task_tracer(provider: Any = None) -> TaskTracer | None:
    """A ``TaskTracer`` when ``opentelemetry`` is importable, else None."""
    try:
        return TaskTracer(provider)
    except ImportError:
        return None


@functools.cache
def _propagation() -> tuple[Any, Any, Any] | None:
    # Looked up once: a failed import searches the whole path each time.
    try:
        from opentelemetry import context, propagate, trace
    except ImportError:
        return None
    return context, propagate, trace


def carrier_for_worker() -> dict[str, str] | None:
    """The current trace context as propagation headers, or None when there is none to send.

    Called only for process tasks, inside the attempt's span: the worker's
    spans then continue the same trace, as children of the attempt.
    """
    otel = _propagation()
    if otel is None:
        return None
    _, propagate, trace = otel
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


@contextmanager
def attached(carrier: dict[str, str] | None) -> Iterator[None]:
    """Make the trace context in ``carrier`` current for the block (in a worker process)."""
    otel = _propagation() if carrier else None
    if otel is None:  # nothing sent, or this interpreter lacks OpenTelemetry: run untraced
        yield
        return
    context, propagate, _ = otel
    token = context.attach(propagate.extract(carrier))
    try:
        yield
    finally:
        context.detach(token)
