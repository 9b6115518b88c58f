"""TaskManager end to end in a FastAPI app, on every SQL backend.

Each test builds its own app, runs it through its lifespan with an in-process
ASGI client, and checks the outcome twice: through the task API
(``GET /tasks/{id}``) and with plain SQL on ``taskflow_tasks`` /
``taskflow_task_logs`` over a fresh connection, the way users report on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import fastapi.dependencies.utils as fastapi_utils
import httpx
import pytest
from fastapi import BackgroundTasks, Depends, FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from taskflow import (
    ManagedBackgroundTasks,
    NotStartedError,
    TaskAdmin,
    TaskArgumentError,
    TaskManager,
    get_task_context,
    task_log,
)
from taskflow.settings import resolve_database_url
from tests.polling import eventually
from tests.processes import stored_utc

POLL_TIMEOUT_S = 10.0
# asyncio's monotonic clock and the wall clock may disagree by a hair.
CLOCK_SLACK = timedelta(milliseconds=2)


# -- helpers -----------------------------------------------------------------------


@dataclass(frozen=True)
class Invoice:
    """A non-JSON argument: pickled, and must come back as an ``Invoice``."""

    number: str
    issued: datetime
    lines: tuple[tuple[str, int], ...]


def from_json(value: Any) -> Any:
    """A JSON column as read by a raw driver (text on most of them)."""
    if isinstance(value, (str, bytes)):
        return json.loads(value)
    return value


class RawDB:
    """Plain SQL over a fresh connection per query: what another process would see."""

    def __init__(self, url: str) -> None:
        self.engine = create_async_engine(resolve_database_url(url).url, poolclass=NullPool)

    async def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            result = await conn.execute(text(sql), params)
            return [dict(row._mapping) for row in result]

    async def task(self, task_id: str) -> dict[str, Any] | None:
        found = await self.rows("SELECT * FROM taskflow_tasks WHERE id = :id", id=task_id)
        return found[0] if found else None

    async def task_where(
        self, task_id: str, check: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            row = await self.task(task_id)
            return row if row is not None and check(row) else None

        return await eventually(probe)

    async def logs(self, task_id: str) -> list[dict[str, Any]]:
        return await self.rows(
            "SELECT attempt, level, message, extra FROM taskflow_task_logs"
            " WHERE task_id = :id ORDER BY id",
            id=task_id,
        )

    async def count(self, where: str = "1 = 1", **params: Any) -> int:
        found = await self.rows(f"SELECT COUNT(*) AS n FROM taskflow_tasks WHERE {where}", **params)
        return int(found[0]["n"])


class Harness:
    """One app, one manager, one raw connection factory."""

    def __init__(self, url: str, *, auto_install: bool = True, lifespan: Any = None) -> None:
        self.url = url
        self.manager = TaskManager(database_url=url, shutdown_grace=5.0)
        self.app = FastAPI(lifespan=lifespan) if lifespan is not None else FastAPI()
        TaskAdmin(self.app, self.manager, auto_install=auto_install)
        self.raw = RawDB(url)

    @contextlib.asynccontextmanager
    async def serve(self, *, raise_app_exceptions: bool = True) -> AsyncIterator[httpx.AsyncClient]:
        """Run the app's lifespan around an in-process client; drain before shutdown."""
        async with self.app.router.lifespan_context(self.app):
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=raise_app_exceptions)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield client
                await self.manager.drain()

    async def api_task(self, client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
        response = await client.get(f"/tasks/{task_id}")
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data


@pytest.fixture(autouse=True)
def _install_leaves_other_apps_plain() -> Any:
    """After a manager shut down, an app of its own gets FastAPI's plain BackgroundTasks."""
    yield
    built = fastapi_utils.BackgroundTasks()
    assert type(built) is BackgroundTasks, (
        f"a request outside any taskflow app got {type(built).__name__} after shutdown"
    )


@pytest.fixture
async def harness(database_url: str) -> AsyncIterator[Harness]:
    built = Harness(database_url)
    try:
        yield built
    finally:
        if built.manager.started:
            await built.manager.shutdown()
        await built.raw.engine.dispose()


# -- injection patterns, executors, results ------------------------------------------


def _add_routes(app: FastAPI, manager: TaskManager, pattern: str, tasks: dict[str, Any]) -> None:
    """POST /sync (a ``def`` route) and /async (an ``async def`` route) for one pattern.

    The sync route adds the sync task and the async route the async one, except for
    the ``managed`` pattern, which crosses them over.
    """
    sync_task, async_task = tasks["sync"], tasks["async"]
    injected: dict[str, type] = tasks["injected"]
    for_sync, for_async = (
        (async_task, sync_task) if pattern == "managed" else (sync_task, async_task)
    )

    if pattern == "plain":

        @app.post("/sync")
        def plain_sync(background_tasks: BackgroundTasks) -> dict[str, Any]:
            injected["sync"] = type(background_tasks)
            return {"task_id": background_tasks.add_task(for_sync, "sync")}

        @app.post("/async")
        async def plain_async(background_tasks: BackgroundTasks) -> dict[str, Any]:
            injected["async"] = type(background_tasks)
            return {"task_id": background_tasks.add_task(for_async, label="async")}

    elif pattern == "managed":

        @app.post("/sync")
        def managed_sync(background_tasks: ManagedBackgroundTasks) -> dict[str, Any]:
            injected["sync"] = type(background_tasks)
            return {"task_id": background_tasks.add_task(for_sync, "sync")}

        @app.post("/async")
        async def managed_async(background_tasks: ManagedBackgroundTasks) -> dict[str, Any]:
            injected["async"] = type(background_tasks)
            return {"task_id": background_tasks.add_task(for_async, label="async")}

    else:
        via_get_tasks = Depends(manager.get_tasks)
        via_alias = Depends(manager.background_tasks)

        @app.post("/sync")
        def depends_sync(tasks: ManagedBackgroundTasks = via_get_tasks) -> dict[str, Any]:
            injected["sync"] = type(tasks)
            return {"task_id": tasks.add_task(for_sync, "sync")}

        @app.post("/async")
        async def depends_async(tasks: ManagedBackgroundTasks = via_alias) -> dict[str, Any]:
            injected["async"] = type(tasks)
            return {"task_id": tasks.add_task(for_async, label="async")}


@pytest.mark.parametrize("pattern", ["plain", "managed", "depends"])
async def test_injection_pattern_with_sync_and_async_routes(harness: Harness, pattern: str) -> None:
    """``BackgroundTasks`` (installed), ``ManagedBackgroundTasks``, ``Depends(get_tasks)``."""
    app, manager = harness.app, harness.manager

    @manager.task()
    def sync_task(label: str) -> dict[str, str]:
        time.sleep(0.002)
        return {"label": label, "ran": "thread"}

    @manager.task()
    async def async_task(label: str) -> dict[str, str]:
        await asyncio.sleep(0.002)
        return {"label": label, "ran": "loop"}

    injected: dict[str, type] = {}
    _add_routes(
        app, manager, pattern, {"sync": sync_task, "async": async_task, "injected": injected}
    )
    crossed = pattern == "managed"
    expected = {  # route -> (func_name, executor, stored args, stored kwargs)
        "sync": (
            "async_task" if crossed else "sync_task",
            "async" if crossed else "thread",
            ["sync"],
            {},
        ),
        "async": (
            "sync_task" if crossed else "async_task",
            "thread" if crossed else "async",
            [],
            {"label": "async"},
        ),
    }
    ids: dict[str, str] = {}
    async with harness.serve() as client:
        for route in expected:
            response = await client.post(f"/{route}")
            assert response.status_code == 200, (route, response.text)
            ids[route] = response.json()["task_id"]
            assert isinstance(ids[route], str) and len(ids[route]) == 36, (route, ids[route])
        await manager.drain()

        for route, (func_name, executor, _, _) in expected.items():
            assert issubclass(injected[route], ManagedBackgroundTasks), route
            ran = "thread" if executor == "thread" else "loop"
            data = await harness.api_task(client, ids[route])
            assert data["status"] == "success", (route, data)
            assert data["func_name"] == func_name
            assert data["executor"] == executor
            assert data["retries_used"] == 0
            assert data["error"] is None
            assert data["result"] == {"label": route, "ran": ran}
            assert data["duration"] is not None and data["duration"] >= 0.0015
            start = datetime.fromisoformat(data["start_time"])
            end = datetime.fromisoformat(data["end_time"])
            assert datetime.fromisoformat(data["created_at"]) <= start <= end

    for route, (func_name, executor, args, kwargs) in expected.items():
        row = await harness.raw.task(ids[route])
        assert row is not None, route
        assert row["status"] == "success"
        assert row["func_name"] == func_name
        assert row["executor"] == executor
        assert row["attempt"] == 0
        assert row["duration_ms"] is not None and row["duration_ms"] >= 1.5
        started, finished = stored_utc(row["started_at"]), stored_utc(row["finished_at"])
        assert started is not None and finished is not None
        assert stored_utc(row["created_at"]) <= started <= finished  # type: ignore[operator]
        ran = "thread" if executor == "thread" else "loop"
        assert from_json(row["result"]) == {"label": route, "ran": ran}
        assert row["owner"] is None and row["lease_expires_at"] is None
        assert row["payload_format"] == "json"
        assert (from_json(row["args"]), from_json(row["kwargs"])) == (args, kwargs)


async def test_depends_get_tasks_without_install(database_url: str) -> None:
    harness = Harness(database_url, auto_install=False)
    manager, app = harness.manager, harness.app
    seen: dict[str, Any] = {}

    @manager.task()
    def sync_task(n: int) -> int:
        return n * 2

    get_tasks = Depends(manager.get_tasks)

    @app.post("/signup")
    def signup(
        background_tasks: BackgroundTasks, tasks: ManagedBackgroundTasks = get_tasks
    ) -> dict[str, Any]:
        seen["plain"] = type(background_tasks)
        seen["managed"] = type(tasks)
        return {"task_id": tasks.add_task(sync_task, 21)}

    try:
        async with harness.serve() as client:
            response = await client.post("/signup")
            task_id = response.json()["task_id"]
            await manager.drain()
            data = await harness.api_task(client, task_id)
        assert seen["plain"] is BackgroundTasks
        assert issubclass(seen["managed"], ManagedBackgroundTasks)
        assert data["status"] == "success" and data["result"] == 42
        row = await harness.raw.task(task_id)
        assert row is not None and row["status"] == "success"
        assert from_json(row["result"]) == 42
    finally:
        await harness.raw.engine.dispose()


async def test_non_json_result_is_not_stored(harness: Harness) -> None:
    @harness.manager.task()
    async def returns_tuple() -> tuple[int, int]:
        return (1, 2)

    async with harness.serve():
        task_id = await harness.manager.enqueue(returns_tuple)
    row = await harness.raw.task(task_id)
    assert row is not None
    assert row["status"] == "success"
    assert row["result"] is None


# -- retries and failures ----------------------------------------------------------------


async def test_retries_until_success_with_persisted_delays(harness: Harness) -> None:
    manager, raw = harness.manager, harness.raw
    attempts: list[int] = []
    failed_at: list[datetime] = []
    retry_run_at: list[datetime] = []

    @manager.task(retries=2, delay=0.01, backoff=2)
    async def flaky_charge(amount: int) -> dict[str, int]:
        context = get_task_context()
        assert context is not None
        attempts.append(context.attempt)
        task_log(f"charging {amount}, attempt {context.attempt}")
        if context.attempt == 1:
            # The first retry's delay was written to the row before it waited.
            row = await raw.task_where(context.task_id, lambda r: r["attempt"] == 1)
            retry_run_at.append(stored_utc(row["run_at"]))  # type: ignore[arg-type]
        if context.attempt < 2:
            failed_at.append(datetime.now(timezone.utc))
            raise ConnectionError(f"gateway timeout #{context.attempt}")
        return {"charged": amount}

    @harness.app.post("/charge")
    async def charge(background_tasks: BackgroundTasks) -> dict[str, Any]:
        return {"task_id": background_tasks.add_task(flaky_charge, 30)}

    async with harness.serve() as client:
        task_id = (await client.post("/charge")).json()["task_id"]
        await manager.drain()
        data = await harness.api_task(client, task_id)

    assert attempts == [0, 1, 2]
    assert data["status"] == "success"
    assert data["retries_used"] == 2
    assert data["max_retries"] == 2
    assert data["result"] == {"charged": 30}
    assert data["error"] is None
    logs = data["logs"]
    assert "--- Retry 1 ---" in logs and "--- Retry 2 ---" in logs
    first, second = logs.index("--- Retry 1 ---"), logs.index("--- Retry 2 ---")
    assert logs[0].endswith("charging 30, attempt 0")
    assert first < second
    assert logs[first + 1].endswith("attempt 1")
    assert logs[second + 1].endswith("attempt 2")

    row = await raw.task(task_id)
    assert row is not None
    assert row["status"] == "success"
    assert row["attempt"] == 2
    assert row["max_retries"] == 2
    assert row["error"] is None and row["stacktrace"] is None
    assert from_json(row["result"]) == {"charged": 30}
    # Retry 1 waited delay, retry 2 waited delay * backoff; both were persisted as run_at.
    assert retry_run_at[0] - failed_at[0] >= timedelta(seconds=0.01)
    final_run_at = stored_utc(row["run_at"])
    assert final_run_at is not None
    assert final_run_at - failed_at[1] >= timedelta(seconds=0.02)
    started = stored_utc(row["started_at"])
    assert started is not None and started >= final_run_at - CLOCK_SLACK


async def test_always_failing_task_ends_failed_with_trace(harness: Harness) -> None:
    manager = harness.manager

    @manager.task(retries=1)
    def always_fails_sync(order_id: int) -> None:
        task_log("trying")
        raise ValueError(f"order {order_id} is invalid")

    @manager.task(retries=1, delay=0.001)
    async def always_fails_async(order_id: int) -> None:
        raise KeyError(f"order-{order_id}")

    @harness.app.post("/orders")
    def orders(background_tasks: BackgroundTasks) -> dict[str, Any]:
        return {
            "sync": background_tasks.add_task(always_fails_sync, 7),
            "async": background_tasks.add_task(always_fails_async, 8),
        }

    async with harness.serve() as client:
        ids = (await client.post("/orders")).json()
        await manager.drain()
        sync_data = await harness.api_task(client, ids["sync"])
        async_data = await harness.api_task(client, ids["async"])

    assert sync_data["status"] == "failed"
    assert sync_data["retries_used"] == 1
    assert sync_data["error"] == "ValueError: order 7 is invalid"
    assert "always_fails_sync" in sync_data["stacktrace"]
    assert sync_data["logs"] == [sync_data["logs"][0], "--- Retry 1 ---", sync_data["logs"][2]]
    assert async_data["status"] == "failed"
    assert "KeyError" in async_data["error"] and "order-8" in async_data["error"]
    assert "always_fails_async" in async_data["stacktrace"]

    for task_id, func_name, error_type in (
        (ids["sync"], "always_fails_sync", "ValueError"),
        (ids["async"], "always_fails_async", "KeyError"),
    ):
        row = await harness.raw.task(task_id)
        assert row is not None
        assert row["status"] == "failed"
        assert row["attempt"] == 1
        assert error_type in row["error"]
        assert func_name in row["stacktrace"] and "Traceback" in row["stacktrace"]
        assert row["finished_at"] is not None and row["duration_ms"] is not None
        assert row["owner"] is None and row["lease_expires_at"] is None
    assert await harness.raw.count("status IN ('pending', 'running')") == 0


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


# -- ordering ----------------------------------------------------------------------------------


async def test_two_tasks_of_one_request_run_in_order(harness: Harness) -> None:
    manager = harness.manager
    spans: dict[str, list[float]] = {}

    @manager.task()
    async def first_step(key: str) -> None:
        spans[f"{key}-first"] = [time.monotonic()]
        await asyncio.sleep(0.03)
        spans[f"{key}-first"].append(time.monotonic())

    @manager.task()
    def second_step(key: str) -> None:
        spans[f"{key}-second"] = [time.monotonic()]
        time.sleep(0.005)
        spans[f"{key}-second"].append(time.monotonic())

    @harness.app.post("/sync-route")
    def sync_route(background_tasks: BackgroundTasks) -> dict[str, Any]:
        return {
            "first": background_tasks.add_task(first_step, "sync"),
            "second": background_tasks.add_task(second_step, "sync"),
        }

    @harness.app.post("/async-route")
    async def async_route(background_tasks: BackgroundTasks) -> dict[str, Any]:
        return {
            "first": background_tasks.add_task(first_step, "async"),
            "second": background_tasks.add_task(second_step, "async"),
        }

    async with harness.serve() as client:
        by_route = {
            "sync": (await client.post("/sync-route")).json(),
            "async": (await client.post("/async-route")).json(),
        }
        await manager.drain()

    for key, ids in by_route.items():
        assert spans[f"{key}-second"][0] >= spans[f"{key}-first"][1], key
        first_row = await harness.raw.task(ids["first"])
        second_row = await harness.raw.task(ids["second"])
        assert first_row is not None and second_row is not None
        assert first_row["status"] == second_row["status"] == "success"
        first_end = stored_utc(first_row["finished_at"])
        second_start = stored_utc(second_row["started_at"])
        assert first_end is not None and second_start is not None
        assert second_start >= first_end, key


async def test_managed_and_plain_tasks_of_one_request_run_in_order(database_url: str) -> None:
    """``ManagedBackgroundTasks`` promises FastAPI's order across plain and managed tasks."""
    harness = Harness(database_url, auto_install=False)
    manager = harness.manager
    spans: dict[str, list[float]] = {}

    @manager.task()
    async def managed_first() -> None:
        spans["managed"] = [time.monotonic()]
        await asyncio.sleep(0.03)
        spans["managed"].append(time.monotonic())

    def plain_second() -> None:
        spans["plain"] = [time.monotonic()]

    @harness.app.post("/mixed")
    async def mixed(background_tasks: BackgroundTasks) -> dict[str, Any]:
        tasks = ManagedBackgroundTasks(manager, background_tasks)  # shares the request's list
        task_id = tasks.add_task(managed_first)
        background_tasks.add_task(plain_second)
        return {"task_id": task_id}

    try:
        async with harness.serve() as client:
            await client.post("/mixed")
            await manager.drain()
        assert "plain" in spans and len(spans["managed"]) == 2
        assert spans["plain"][0] >= spans["managed"][1], (
            "the plain task added second started before the managed task added first finished"
        )
    finally:
        await harness.raw.engine.dispose()


# -- enqueue and lifecycle ---------------------------------------------------------------------


async def test_enqueue_returns_after_the_row_is_committed(harness: Harness) -> None:
    manager = harness.manager
    release = asyncio.Event()
    calls: list[tuple[int, str]] = []

    @manager.task()
    async def gated(n: int, label: str = "") -> int:
        await release.wait()
        calls.append((n, label))
        return n + 1

    @manager.task()
    def quick(n: int) -> int:
        return n

    async with harness.serve():
        task_id = await manager.enqueue(gated, 41, label="x")
        assert isinstance(task_id, str)
        # Visible at once to any other connection, without waiting or polling.
        row = await harness.raw.task(task_id)
        assert row is not None, "enqueue() returned before the row was committed"
        assert row["status"] in ("pending", "running")
        assert row["func_name"] == "gated"
        assert from_json(row["args"]) == [41]
        assert from_json(row["kwargs"]) == {"label": "x"}
        release.set()
        quick_id = await manager.enqueue(quick, 5)
        assert await harness.raw.task(quick_id) is not None
        await manager.drain()

    assert calls == [(41, "x")]
    done = await harness.raw.task(task_id)
    assert done is not None and done["status"] == "success"
    assert from_json(done["result"]) == 42
    quick_row = await harness.raw.task(quick_id)
    assert quick_row is not None and quick_row["status"] == "success"


async def test_not_started_error_before_startup_and_after_shutdown(database_url: str) -> None:
    manager = TaskManager(database_url=database_url)
    app = FastAPI()
    manager.init_app(app)
    raw = RawDB(database_url)

    def job() -> None:
        return None

    @app.post("/early")
    async def early(background_tasks: BackgroundTasks) -> Any:
        return {"task_id": ManagedBackgroundTasks(manager, background_tasks).add_task(job)}

    try:
        with pytest.raises(NotStartedError, match="init_app"):
            await manager.enqueue(job)
        with pytest.raises(NotStartedError):
            ManagedBackgroundTasks(manager).add_task(job)
        transport = httpx.ASGITransport(app=app)  # no lifespan: the manager never started
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            with pytest.raises(NotStartedError):
                await client.post("/early")

        async with app.router.lifespan_context(app):
            assert manager.started
            await manager.enqueue(job)
            await manager.drain()
        assert not manager.started
        with pytest.raises(NotStartedError):
            await manager.enqueue(job)
        assert await raw.count() == 1
    finally:
        await raw.engine.dispose()


async def test_user_lifespan_runs_inside_the_managers(database_url: str) -> None:
    events: list[tuple[str, bool]] = []
    ids: list[str] = []
    holder: dict[str, TaskManager] = {}
    ran: list[str] = []

    def job(label: str) -> str:
        ran.append(label)
        return label

    @contextlib.asynccontextmanager
    async def user_lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        manager = holder["manager"]
        events.append(("user-start", manager.started))
        ids.append(await manager.enqueue(job, "from-startup" if not ids else "again"))
        yield {"greeting": "hello"}
        events.append(("user-stop", manager.started))
        ids.append(await manager.enqueue(job, "from-shutdown" if len(ids) == 1 else "again"))

    harness = Harness(database_url, lifespan=user_lifespan)
    holder["manager"] = harness.manager

    try:
        # The state the user's lifespan yields reaches Starlette (request.state) unchanged.
        async with harness.app.router.lifespan_context(harness.app) as state:
            assert state == {"greeting": "hello"}
            assert events == [("user-start", True)]
            await harness.manager.drain()
        assert events == [("user-start", True), ("user-stop", True)]
        assert not harness.manager.started
        # A task the user's shutdown adds commits while the manager still runs:
        # it either ran before the manager stopped or, if its turn came after,
        # was released (pending, no owner) for another instance or the next
        # start.  Either way it runs exactly once.
        late = await harness.raw.task(ids[1])
        assert late is not None
        if "from-shutdown" in ran:
            assert late["status"] == "success", late
        else:
            assert late["status"] == "pending" and late["owner"] is None, late
        async with harness.app.router.lifespan_context(harness.app):
            for _ in range(200):
                row = await harness.raw.task(ids[1])
                if row is not None and row["status"] == "success":
                    break
                await asyncio.sleep(0.025)
        assert ran.count("from-shutdown") == 1
        for task_id in ids[:2]:
            row = await harness.raw.task(task_id)
            assert row is not None and row["status"] == "success", row
    finally:
        await harness.raw.engine.dispose()


async def test_init_app_twice_is_harmless(harness: Harness) -> None:
    manager, app = harness.manager, harness.app
    wrapped = app.router.lifespan_context
    manager.init_app(app)
    manager.init_app(app)
    assert app.router.lifespan_context is wrapped  # hooks registered once

    @manager.task()
    def job() -> str:
        return "ok"

    @app.post("/go")
    def go(background_tasks: BackgroundTasks) -> dict[str, Any]:
        return {"task_id": background_tasks.add_task(job)}

    async with harness.serve() as client:
        task_id = (await client.post("/go")).json()["task_id"]
        await manager.drain()
        assert (await harness.api_task(client, task_id))["status"] == "success"
    assert not manager.started
    assert await harness.raw.count() == 1


async def test_app_can_be_started_twice(harness: Harness) -> None:
    """Test suites enter an app's lifespan once per test: injection must work every time."""
    manager, app = harness.manager, harness.app

    @manager.task()
    def job(n: int) -> int:
        return n

    @app.post("/go/{n}")
    def go(n: int, background_tasks: BackgroundTasks) -> dict[str, Any]:
        return {"task_id": background_tasks.add_task(job, n)}

    for n in (1, 2):
        async with harness.serve() as client:
            response = await client.post(f"/go/{n}")
            task_id = response.json()["task_id"]
            assert isinstance(task_id, str), f"lifespan #{n}: add_task returned {task_id!r}"
            await manager.drain()
        row = await harness.raw.task(task_id)
        assert row is not None and row["status"] == "success"


async def test_install_is_process_wide_only_while_running(harness: Harness) -> None:
    seen: list[type] = []
    ran: list[str] = []

    def plain_job() -> None:
        ran.append("plain")

    plain_app = FastAPI()

    @plain_app.post("/plain")
    def plain(background_tasks: BackgroundTasks) -> dict[str, Any]:
        seen.append(type(background_tasks))
        return {"result": background_tasks.add_task(plain_job)}

    plain_transport = httpx.ASGITransport(app=plain_app)
    async with httpx.AsyncClient(transport=plain_transport, base_url="http://p") as plain_client:
        async with harness.serve():
            # install() is process-wide, as in the described system.
            await plain_client.post("/plain")
            assert issubclass(seen[-1], ManagedBackgroundTasks)
            await harness.manager.drain()

        response = await plain_client.post("/plain")
        assert seen[-1] is BackgroundTasks
        assert response.json() == {"result": None}
        assert ran[-1] == "plain"
