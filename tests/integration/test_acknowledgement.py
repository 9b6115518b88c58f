"""What a client is told, and when: ids only for committed rows, 503 when they cannot be.

In-process (httpx over ASGI) on every SQL backend.  Each test reads the
table through a connection of its own, so "committed" means what another
process would see.  The real-process drills (SIGKILL, outages through a TCP
proxy) are in test_ack_drill.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.background import BackgroundTask

from taskflow import ManagedBackgroundTasks, NotStartedError, TaskAdmin, TaskManager
from taskflow.settings import resolve_database_url

RAN: list[str] = []
SEEN_STATUS: dict[str, str] = {}


async def remember(tag: str) -> str:
    RAN.append(tag)
    return tag


def remember_sync(tag: str) -> str:
    RAN.append(tag)
    return tag


class Table:
    """The tasks table seen through a connection of the test's own."""

    def __init__(self, url: str) -> None:
        self.engine = create_async_engine(resolve_database_url(url).url)

    async def row(self, task_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            found = await conn.execute(
                text("SELECT status, error FROM taskflow_tasks WHERE id = :id"), {"id": task_id}
            )
            row = found.mappings().first()
        return dict(row) if row is not None else None

    async def close(self) -> None:
        await self.engine.dispose()


def build_app(manager: TaskManager) -> FastAPI:
    app = FastAPI()
    TaskAdmin(app, manager, auto_install=True)
    manager.task(name="remember")(remember)
    manager.task(name="remember_sync")(remember_sync)
    get_tasks = Depends(manager.get_tasks)

    @app.post("/plain-async/{tag}")
    async def plain_async(tag: str, background_tasks: BackgroundTasks) -> Any:
        return {"task_id": background_tasks.add_task(remember, tag)}

    @app.post("/plain-sync/{tag}")
    def plain_sync(tag: str, background_tasks: BackgroundTasks) -> Any:
        return {"task_id": background_tasks.add_task(remember_sync, tag)}

    @app.post("/depends-async/{tag}")
    async def depends_async(tag: str, tasks: ManagedBackgroundTasks = get_tasks) -> Any:
        return {"task_id": tasks.add_task(remember, tag)}

    @app.post("/depends-sync/{tag}")
    def depends_sync(tag: str, tasks: ManagedBackgroundTasks = get_tasks) -> Any:
        return {"task_id": tasks.add_task(remember_sync, tag)}

    @app.post("/managed-sync/{tag}")
    def managed_sync(tag: str, tasks: ManagedBackgroundTasks) -> Any:
        return {"task_id": tasks.add_task(remember_sync, tag)}

    @app.post("/then-fail/{tag}")
    async def then_fail(tag: str, tasks: ManagedBackgroundTasks) -> Any:
        SEEN_STATUS[tag] = tasks.add_task(remember, tag)
        raise HTTPException(status_code=409, detail="changed my mind")

    @app.post("/with-plain/{tag}")
    async def with_plain(tag: str, tasks: ManagedBackgroundTasks) -> Any:
        task_id = tasks.add_task(remember, tag)
        tasks.tasks.append(BackgroundTask(remember_sync, f"{tag}-plain"))  # FastAPI's own kind
        return {"task_id": task_id}

    @app.post("/own-background/{tag}")
    async def own_background(tag: str, tasks: ManagedBackgroundTasks) -> Any:
        task_id = tasks.add_task(remember, tag)
        # FastAPI attaches the injected tasks only to a response without a
        # background of its own: this response's replaces them.
        return JSONResponse(
            {"task_id": task_id}, background=BackgroundTask(remember_sync, f"{tag}-plain")
        )

    return app


@asynccontextmanager
async def serving(manager: TaskManager) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(manager)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@pytest.fixture(autouse=True)
def _clear() -> None:
    RAN.clear()
    SEEN_STATUS.clear()


@pytest.fixture
async def table(database_url: str) -> AsyncIterator[Table]:
    built = Table(database_url)
    yield built
    await built.close()


ROUTES = ["plain-async", "plain-sync", "depends-async", "depends-sync", "managed-sync"]


@pytest.mark.parametrize("route", ROUTES)
async def test_an_id_reaches_the_client_only_once_its_row_is_committed(
    database_url: str, table: Table, route: str
) -> None:
    # A long group-commit pause: a response that did not wait for the commit
    # would arrive while the row is still in the write buffer.
    manager = TaskManager(database_url=database_url, commit_interval=1.0)
    async with serving(manager) as client:
        await client.post(f"/{route}/warm-up")  # the next write would wait out the pause
        response = await client.post(f"/{route}/checked")
        assert response.status_code == 200, response.text
        task_id = response.json()["task_id"]
        row = await table.row(task_id)
        assert row is not None, "the id reached the client before its row was committed"
        await asyncio.wait_for(manager.drain(), 10)
    assert (await table.row(task_id)) == {"status": "success", "error": None}


async def test_buffered_acknowledgement_answers_before_the_commit(
    database_url: str, table: Table
) -> None:
    manager = TaskManager(database_url=database_url, commit_interval=1.0, acknowledge="buffered")
    async with serving(manager) as client:
        await client.post("/plain-async/warm-up")
        await manager.flush()
        task_id = (await client.post("/plain-async/early")).json()["task_id"]
        assert await table.row(task_id) is None  # what "buffered" trades away
        await asyncio.wait_for(manager.drain(), 10)
    assert (await table.row(task_id) or {}).get("status") == "success"


async def test_a_request_that_fails_after_add_task_leaves_a_cancelled_row(
    database_url: str, table: Table
) -> None:
    manager = TaskManager(database_url=database_url)
    async with serving(manager) as client:
        response = await client.post("/then-fail/doomed")
        assert response.status_code == 409
        await asyncio.wait_for(manager.drain(), 10)
    row = await table.row(SEEN_STATUS["doomed"])
    assert row is not None and row["status"] == "cancelled", row
    assert "HTTP 409" in row["error"]
    assert "doomed" not in RAN


async def test_a_response_with_its_own_background_still_runs_the_added_task(
    database_url: str, table: Table
) -> None:
    manager = TaskManager(database_url=database_url)
    async with serving(manager) as client:
        response = await client.post("/own-background/kept")
        assert response.status_code == 200
        await asyncio.wait_for(manager.drain(), 10)
    assert (await table.row(response.json()["task_id"]) or {}).get("status") == "success"
    assert sorted(RAN) == ["kept", "kept-plain"]


async def test_a_task_starts_only_once_its_running_state_is_committed(
    database_url: str, table: Table
) -> None:
    """Inside the task, another connection already reads ``running``.

    After-response tasks share the next group commit (here half a second
    away), so a task that started before its ``running`` state was committed
    would read its row ``pending``.
    """
    seen: dict[str, Any] = {}
    manager = TaskManager(database_url=database_url, commit_interval=0.5)
    loop = asyncio.get_running_loop()

    @manager.task(name="look_at_own_row")
    async def look_at_own_row() -> None:
        seen["async"] = await table.row(_task_id())

    @manager.task(name="look_at_own_row_sync")
    def look_at_own_row_sync() -> None:
        read = asyncio.run_coroutine_threadsafe(table.row(_task_id()), loop)
        seen["thread"] = read.result(10)

    app = build_app(manager)

    @app.post("/look")
    async def look(tasks: ManagedBackgroundTasks) -> Any:
        return [tasks.add_task(look_at_own_row), tasks.add_task(look_at_own_row_sync)]

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.post("/look")).status_code == 200
            await asyncio.wait_for(manager.drain(), 10)
    assert seen["async"]["status"] == "running", seen
    assert seen["thread"]["status"] == "running", seen


def _task_id() -> str:
    from taskflow import get_task_context

    context = get_task_context()
    assert context is not None
    return context.task_id


async def test_graceful_shutdown_runs_the_tasks_of_the_last_requests(
    database_url: str, table: Table
) -> None:
    manager = TaskManager(database_url=database_url, shutdown_grace=10.0)

    @manager.task(name="takes_a_while")
    async def takes_a_while(tag: str) -> str:
        await asyncio.sleep(0.3)
        RAN.append(tag)
        return tag

    app = build_app(manager)

    @app.post("/slow/{tag}")
    async def slow(tag: str, tasks: ManagedBackgroundTasks) -> Any:
        return {"task_id": tasks.add_task(takes_a_while, tag)}

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            ids = [(await client.post(f"/slow/{n}")).json()["task_id"] for n in range(20)]
        # The lifespan ends at once: what those requests accepted must still run.
    statuses = [((await table.row(task_id)) or {}).get("status") for task_id in ids]
    assert statuses == ["success"] * 20
    assert sorted(RAN) == sorted(str(n) for n in range(20))


async def test_drain_runs_tasks_added_outside_a_request(database_url: str, table: Table) -> None:
    manager = TaskManager(database_url=database_url)
    manager.task(name="remember")(remember)
    await manager.startup()  # no app: nothing would ever run the list
    try:
        tasks = ManagedBackgroundTasks(manager)
        task_id = tasks.add_task(remember, "outside")
        await asyncio.wait_for(manager.drain(), 10)
    finally:
        await manager.shutdown()
    assert RAN == ["outside"]
    assert (await table.row(task_id) or {}).get("status") == "success"


async def test_outside_a_request_of_a_served_app_the_task_runs_at_once(
    database_url: str, table: Table
) -> None:
    manager = TaskManager(database_url=database_url)
    async with serving(manager):
        task_id = ManagedBackgroundTasks(manager).add_task(remember, "script")
        await asyncio.wait_for(manager.drain(), 10)
    assert RAN == ["script"]
    assert (await table.row(task_id) or {}).get("status") == "success"


# Starlette 1.x's TestClient prefers the httpx2 package and warns when it finds httpx.
@pytest.mark.filterwarnings("ignore:Using .httpx. with .starlette.testclient.")
def test_test_client_without_with_fails_the_same_way_every_time(database_url: str) -> None:
    from fastapi.testclient import TestClient

    manager = TaskManager(database_url=database_url)
    app = build_app(manager)
    with pytest.raises(NotStartedError):
        TestClient(app).post("/plain-async/no-lifespan")
    with TestClient(app) as client:
        assert client.post("/plain-async/with-lifespan").status_code == 200
    # Before, the managed class was gone after the block: plain, non-durable tasks.
    with pytest.raises(NotStartedError):
        TestClient(app).post("/plain-async/no-lifespan-again")
    assert "no-lifespan" not in RAN and "no-lifespan-again" not in RAN


@pytest.mark.parametrize("backend_name", ["sqlite"], indirect=True)
async def test_a_locked_database_answers_503_and_creates_no_task(
    database_url: str, table: Table
) -> None:
    """The database cannot take the write in time: 503 with Retry-After, and no task runs.

    A SQLite file whose write lock another connection holds is a real
    database refusing writes; the server outages go through a TCP proxy in
    test_ack_drill.py.
    """
    manager = TaskManager(database_url=database_url, acknowledge_timeout=0.5)
    async with serving(manager) as client:
        await client.post("/plain-async/before")
        await asyncio.wait_for(manager.drain(), 10)
        path = make_url(database_url).database
        assert path is not None
        blocker = sqlite3.connect(path, timeout=0)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            started = time.monotonic()
            response = await client.post("/with-plain/refused")
            waited = time.monotonic() - started
        finally:
            blocker.rollback()
            blocker.close()
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "5"
        assert "not created" in response.json()["detail"]
        assert 0.4 < waited < 5
        after = await client.post("/plain-async/after")
        assert after.status_code == 200
        await asyncio.wait_for(manager.drain(), 10)
    assert sorted(RAN) == ["after", "before"]
    async with table.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT status FROM taskflow_tasks"))).scalars().all()
    # The refused task either never reached the table or was written cancelled.
    assert sorted(rows) in (["success", "success"], ["cancelled", "success", "success"])


async def test_a_task_added_by_a_running_task_runs(database_url: str, table: Table) -> None:
    """The task runs in a copy of its request's context: the request is over by then."""
    manager = TaskManager(database_url=database_url)
    children: list[str] = []

    @manager.task(name="parent")
    async def parent() -> None:
        children.append(ManagedBackgroundTasks(manager).add_task(remember, "child"))

    app = build_app(manager)

    @app.post("/parent")
    async def add_parent(tasks: ManagedBackgroundTasks) -> Any:
        return {"task_id": tasks.add_task(parent)}

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.post("/parent")).status_code == 200
            await asyncio.wait_for(manager.drain(), 10)
    assert RAN == ["child"]
    assert (await table.row(children[0]) or {}).get("status") == "success"


async def test_an_in_memory_database_serves_reads_and_stops_promptly() -> None:
    """No URL: one shared connection, which the group commit must not keep for itself."""
    manager = TaskManager()
    manager.task(name="remember")(remember)
    await manager.startup()
    started = time.monotonic()
    try:
        task_id = await manager.enqueue(remember, "memory")
        await asyncio.wait_for(manager.drain(), 10)
        record = await asyncio.wait_for(manager.get_task(task_id), 5)
        assert record is not None and record.status.value == "success"
    finally:
        await asyncio.wait_for(manager.shutdown(), 10)
    assert time.monotonic() - started < 5
