"""Context vars and OpenTelemetry spans flow from the request into its tasks.

The tracer provider is handed to the manager (and to the app's own request
span) rather than installed globally, so the rest of the suite runs without
telemetry.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from taskflow import ManagedBackgroundTasks, TaskAdmin, TaskManager, TaskStatus
from taskflow.observe.tracing import task_tracer
from tests.apps import process_tasks

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
SEEN: dict[str, Any] = {}


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    SEEN.clear()
    yield provider, exporter
    provider.shutdown()


async def _wait_terminal(manager: TaskManager, task_id: str) -> Any:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        record = await manager.get_task(task_id)
        if record is not None and record.status.is_terminal:
            return record
        await asyncio.sleep(0.01)
    raise AssertionError(f"{task_id} did not finish")


@pytest.mark.parametrize("backend_name", ["sqlite"])
async def test_request_span_is_the_parent_of_the_task_span(
    schema_db_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("app")
    manager = TaskManager(database_url=schema_db_url, tracer_provider=provider)

    @manager.task()
    async def send_receipt(order: int) -> str:
        SEEN["async"] = REQUEST_ID.get()
        with tracer.start_as_current_span("render receipt"):
            await asyncio.sleep(0)
        return f"receipt {order}"

    @manager.task()
    def resize(order: int) -> None:
        SEEN["thread"] = REQUEST_ID.get()
        with tracer.start_as_current_span("resize image"):
            pass

    @manager.task()
    async def broken() -> None:
        raise RuntimeError("printer on fire")

    app = FastAPI()
    TaskAdmin(app, manager)
    via_manager = Depends(manager.get_tasks)

    @app.post("/orders/{order}")
    async def place(order: int, tasks: ManagedBackgroundTasks = via_manager) -> dict[str, Any]:
        with tracer.start_as_current_span("POST /orders/{order}") as request_span:
            REQUEST_ID.set(f"req-{order}")
            ids = [
                tasks.add_task(send_receipt, order),
                tasks.add_task(resize, order),
                tasks.add_task(broken),
            ]
            SEEN["request_span"] = request_span.get_span_context().span_id
        return {"ids": ids}

    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as client,
    ):
        answer = await client.post("/orders/7")
        assert answer.status_code == 200, answer.text
        ids = answer.json()["ids"]
        records = [await _wait_terminal(manager, task_id) for task_id in ids]
    assert [r.status for r in records] == [
        TaskStatus.SUCCESS,
        TaskStatus.SUCCESS,
        TaskStatus.FAILED,
    ]
    # Context vars set by the request reach the task, on the loop and in a thread.
    assert SEEN["async"] == "req-7" and SEEN["thread"] == "req-7"

    finished: dict[str, ReadableSpan] = {span.name: span for span in exporter.get_finished_spans()}
    request = finished["POST /orders/{order}"]
    assert request.context is not None
    assert request.context.span_id == SEEN["request_span"]
    for name, record in zip(["send_receipt", "resize", "broken"], records, strict=True):
        span = finished[f"taskflow.task {name}"]
        assert span.parent is not None and span.parent.span_id == request.context.span_id, name
        assert span.context is not None and span.context.trace_id == request.context.trace_id
        attributes = dict(span.attributes or {})
        assert attributes["taskflow.task_id"] == record.task_id
        assert attributes["taskflow.func_name"] == name
        assert attributes["taskflow.attempt"] == 0
        assert attributes["taskflow.executor"] == record.executor
        assert attributes["taskflow.status"] == record.status.value
    # Spans opened by the task function are children of the task's span.
    for inner, outer in [("render receipt", "send_receipt"), ("resize image", "resize")]:
        parent = finished[inner].parent
        task_span = finished[f"taskflow.task {outer}"].context
        assert parent is not None and task_span is not None
        assert parent.span_id == task_span.span_id
    failed = finished["taskflow.task broken"]
    assert failed.status.status_code is StatusCode.ERROR
    assert dict(failed.attributes or {})["taskflow.error"] == "RuntimeError: printer on fire"


@pytest.mark.parametrize("backend_name", ["sqlite"])
async def test_no_spans_without_a_configured_provider(schema_db_url: str) -> None:
    """The API's default (proxy) provider means nothing is traced, at no cost per task."""
    tracer = task_tracer()
    assert tracer is not None  # opentelemetry-api is installed in the test environment
    manager = TaskManager(database_url=schema_db_url)

    @manager.task()
    async def plain() -> str:
        from opentelemetry import trace

        return str(trace.get_current_span().get_span_context().is_valid)

    await manager.startup()
    try:
        task_id = await manager.enqueue(plain)
        record = await _wait_terminal(manager, task_id)
    finally:
        await manager.shutdown()
    assert record.result == "False"  # no span was made current around the task


@pytest.mark.parametrize("backend_name", ["sqlite"])
async def test_a_process_task_continues_the_trace_in_its_worker(
    schema_db_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """The worker process runs the function under the attempt's span, as a remote parent."""
    provider, exporter = spans
    manager = TaskManager(
        database_url=schema_db_url, tracer_provider=provider, max_process_workers=1
    )
    traced = manager.task(executor="process")(process_tasks.trace_position)
    await manager.startup()
    try:
        with provider.get_tracer("app").start_as_current_span("POST /reports") as request_span:
            task_id = await manager.enqueue(traced)
        record = await _wait_terminal(manager, task_id)
    finally:
        await manager.shutdown()
    assert record.status is TaskStatus.SUCCESS, record.error
    [attempt] = [s for s in exporter.get_finished_spans() if s.name.startswith("taskflow.task ")]
    assert attempt.context is not None and attempt.parent is not None
    assert attempt.parent.span_id == request_span.get_span_context().span_id
    # In the worker, the current span is the attempt's: same trace, and its span id.
    assert record.result == {
        "trace_id": format(attempt.context.trace_id, "032x"),
        "span_id": format(attempt.context.span_id, "016x"),
    }


@pytest.mark.parametrize("backend_name", ["sqlite"])
async def test_a_process_task_without_a_trace_runs_untraced(schema_db_url: str) -> None:
    manager = TaskManager(database_url=schema_db_url, max_process_workers=1)
    traced = manager.task(executor="process")(process_tasks.trace_position)
    await manager.startup()
    try:
        record = await _wait_terminal(manager, await manager.enqueue(traced))
    finally:
        await manager.shutdown()
    assert record.status is TaskStatus.SUCCESS, record.error
    assert record.result == {"trace_id": "", "span_id": ""}
