"""TaskManager end to end: task logs, context and tags; arguments that are not JSON.

On every SQL backend. Each test builds its own app, runs it through its
lifespan with an in-process ASGI client, and checks the outcome twice: through
the task API (``GET /tasks/{id}``) and with plain SQL on ``taskflow_tasks`` /
``taskflow_task_logs`` over a fresh connection, the way users report on it.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi import BackgroundTasks

from taskflow import TaskArgumentError, get_task_context, task_log
from tests.integration.manager.harness import Harness, from_json


@dataclass(frozen=True)
class Invoice:
    """A non-JSON argument: pickled, and must come back as an ``Invoice``."""

    number: str
    issued: datetime
    lines: tuple[tuple[str, int], ...]


# -- logs, context, tags -------------------------------------------------------------------


async def test_task_log_context_and_tags(harness: Harness) -> None:
    manager = harness.manager
    contexts: dict[str, Any] = {}

    def helper_sees_context() -> Any:
        return get_task_context()  # a helper called from the task, not the task itself

    @manager.task()
    def sync_billing(customer: str) -> None:
        contexts["sync"] = get_task_context()
        contexts["sync-helper"] = helper_sees_context()
        task_log("charging", level="warning", amount=12, currency="EUR")
        task_log(f"done for {customer}")

    @manager.task()
    async def async_billing(customer: str) -> None:
        contexts["async"] = get_task_context()
        task_log("queued", level="debug", position=3)
        await asyncio.sleep(0)
        task_log(f"done for {customer}", level="error", code="E42")

    @harness.app.post("/bill")
    async def bill(background_tasks: BackgroundTasks) -> dict[str, Any]:
        tags = {"tenant": "acme", "plan": "pro"}
        result = {
            "sync": background_tasks.add_task(sync_billing, "c1", tags=tags),
            "async": background_tasks.add_task(async_billing, "c2", tags={"tenant": "globex"}),
        }
        contexts["route"] = get_task_context()
        return result

    async with harness.serve() as client:
        ids = (await client.post("/bill")).json()
        await manager.drain()
        sync_data = await harness.api_task(client, ids["sync"])
        async_data = await harness.api_task(client, ids["async"])

    assert contexts["route"] is None
    sync_ctx, async_ctx = contexts["sync"], contexts["async"]
    assert (sync_ctx.task_id, sync_ctx.func_name, sync_ctx.attempt) == (
        ids["sync"],
        "sync_billing",
        0,
    )
    assert sync_ctx.tags == {"tenant": "acme", "plan": "pro"}
    assert contexts["sync-helper"] == sync_ctx
    assert (async_ctx.task_id, async_ctx.func_name, async_ctx.attempt) == (
        ids["async"],
        "async_billing",
        0,
    )
    assert async_ctx.tags == {"tenant": "globex"}

    assert sync_data["tags"] == {"tenant": "acme", "plan": "pro"}
    assert async_data["tags"] == {"tenant": "globex"}
    assert [line.split(" ", 1)[1] for line in sync_data["logs"]] == ["charging", "done for c1"]

    sync_logs = await harness.raw.logs(ids["sync"])
    assert [(r["attempt"], r["level"], r["message"]) for r in sync_logs] == [
        (0, "warning", "charging"),
        (0, "info", "done for c1"),
    ]
    assert from_json(sync_logs[0]["extra"]) == {"amount": 12, "currency": "EUR"}
    assert from_json(sync_logs[1]["extra"]) in (None, {})
    async_logs = await harness.raw.logs(ids["async"])
    assert [(r["level"], r["message"], from_json(r["extra"])) for r in async_logs] == [
        ("debug", "queued", {"position": 3}),
        ("error", "done for c2", {"code": "E42"}),
    ]
    sync_row = await harness.raw.task(ids["sync"])
    async_row = await harness.raw.task(ids["async"])
    assert sync_row is not None and async_row is not None
    assert from_json(sync_row["tags"]) == {"tenant": "acme", "plan": "pro"}
    assert from_json(async_row["tags"]) == {"tenant": "globex"}


# -- arguments -------------------------------------------------------------------------------


async def test_non_json_arguments_round_trip_exactly(harness: Harness) -> None:
    manager = harness.manager
    received: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    moment = datetime(2026, 2, 3, 4, 5, 6, 789012, tzinfo=timezone(timedelta(hours=-5)))
    invoice = Invoice("INV-1", moment, (("widget", 2), ("gadget", 1)))

    @manager.task()
    def record_args(*args: Any, **kwargs: Any) -> None:
        received.append((args, kwargs))

    @harness.app.post("/invoice")
    def create_invoice(background_tasks: BackgroundTasks) -> dict[str, Any]:
        task_id = background_tasks.add_task(
            record_args, (1, 2), moment, invoice, pair=("a", 1), nested={"t": (3,)}
        )
        return {"task_id": task_id}

    async with harness.serve() as client:
        task_id = (await client.post("/invoice")).json()["task_id"]
        await manager.drain()
        data = await harness.api_task(client, task_id)

    assert data["status"] == "success", data
    ((args, kwargs),) = received
    assert args == ((1, 2), moment, invoice)
    assert type(args[0]) is tuple
    assert args[1].utcoffset() == timedelta(hours=-5)
    assert type(args[2]) is Invoice and type(args[2].lines[0]) is tuple
    assert kwargs == {"pair": ("a", 1), "nested": {"t": (3,)}}
    assert type(kwargs["pair"]) is tuple and type(kwargs["nested"]["t"]) is tuple

    row = await harness.raw.task(task_id)
    assert row is not None
    assert row["payload_format"] == "pickle"
    assert row["payload"] is not None
    assert row["args"] is None and row["kwargs"] is None


@pytest.mark.parametrize("route_kind", ["sync", "async"])
async def test_unpicklable_argument_is_rejected_by_add_task(
    harness: Harness, route_kind: str
) -> None:
    manager = harness.manager
    errors: list[BaseException] = []

    @manager.task()
    def guarded(lock: Any) -> None:
        raise AssertionError("must never run")

    def add(background_tasks: BackgroundTasks) -> dict[str, Any]:
        try:
            task_id = background_tasks.add_task(guarded, threading.Lock())
        except Exception as exc:
            errors.append(exc)
            raise
        return {"task_id": task_id}

    if route_kind == "sync":

        @harness.app.post("/guard")
        def guard_sync(background_tasks: BackgroundTasks) -> dict[str, Any]:
            return add(background_tasks)

    else:

        @harness.app.post("/guard")
        async def guard_async(background_tasks: BackgroundTasks) -> dict[str, Any]:
            return add(background_tasks)

    async with harness.serve(raise_app_exceptions=False) as client:
        response = await client.post("/guard")
        await manager.drain()

    assert response.status_code == 500
    (error,) = errors
    assert isinstance(error, TaskArgumentError)
    assert "argument 0 (lock)" in str(error)
    assert await harness.raw.count() == 0
