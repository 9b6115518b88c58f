"""TaskManager end to end: enqueue, startup and shutdown, lifespans and install.

On every SQL backend. Each test builds its own app, runs it through its
lifespan with an in-process ASGI client, and checks the outcome twice: through
the task API (``GET /tasks/{id}``) and with plain SQL on ``taskflow_tasks`` /
``taskflow_task_logs`` over a fresh connection, the way users report on it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI

from taskflow import ManagedBackgroundTasks, NotStartedError, TaskManager
from tests.integration.manager.harness import Harness, RawDB, from_json


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
