"""fastapi-taskflow's public names through a real app: injection, registry, store, backends.

Each test serves an app through its lifespan with an in-process client, the
way a user's test suite would.  The store view runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import fastapi
import httpx
import pytest
from fastapi import BackgroundTasks, Depends, FastAPI

import taskflow
from taskflow import (
    BlockingCallError,
    ManagedBackgroundTasks,
    MySQLBackend,
    NotStartedError,
    PostgresBackend,
    TaskAdmin,
    TaskConfig,
    TaskManager,
    TaskStatus,
)

sqlite_only = pytest.mark.parametrize("backend_name", ["sqlite"], indirect=True)


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        yield client


def build(database_url: str) -> tuple[FastAPI, TaskManager, dict[str, Any]]:
    manager = TaskManager(database_url=database_url)
    app = FastAPI()
    TaskAdmin(app, manager, auto_install=True, auth=False)
    seen: dict[str, Any] = {}

    @manager.task(retries=2, name="mailer")
    def send_email(address: str, tags: str = "") -> str:
        return f"{address}{tags}"

    @app.post("/plain")
    def plain(background_tasks: BackgroundTasks) -> dict[str, Any]:
        seen["plain"] = background_tasks
        return {"task_id": background_tasks.add_task(send_email, "a@example.com")}

    @app.post("/managed")
    async def managed(background_tasks: ManagedBackgroundTasks) -> dict[str, Any]:
        seen["managed"] = background_tasks
        keyed = background_tasks.with_options(idempotency_key="k1", tags={"t": "1"})
        # Every keyword argument goes to the task, even one named like an option.
        return {"task_id": keyed.add_task(send_email, "b@example.com", tags="!")}

    via_dependency = Depends(manager.get_tasks)

    @app.post("/depends")
    def depends(tasks: ManagedBackgroundTasks = via_dependency) -> dict[str, Any]:
        seen["depends"] = tasks
        # fastapi-taskflow's spelling: options among the task's keyword arguments.
        return {"task_id": tasks.add_task(send_email, "c@example.com", priority=3)}

    @app.get("/sync-store/{task_id}")
    def sync_store(task_id: str) -> dict[str, Any]:
        record = manager.store.get(task_id)
        listed = [r.task_id for r in manager.store.list()]
        return {"status": None if record is None else record.status.value, "listed": listed}

    @app.get("/async-store/{task_id}")
    async def async_store(task_id: str) -> dict[str, Any]:
        record = await manager.store.aget(task_id)
        listed = [r.task_id for r in await manager.store.alist()]
        return {"status": None if record is None else record.status.value, "listed": listed}

    @app.get("/async-store-blocking/{task_id}")
    async def async_store_blocking(task_id: str) -> dict[str, Any]:
        try:
            manager.store.get(task_id)
        except BlockingCallError as exc:
            return {"refused": str(exc)}
        return {"refused": None}

    seen["send_email"] = send_email
    return app, manager, seen


@sqlite_only
async def test_every_injection_pattern_is_a_fastapi_background_tasks(database_url: str) -> None:
    app, manager, seen = build(database_url)
    async with serve(app) as client:
        ids = {}
        for route in ("plain", "managed", "depends"):
            answer = await client.post(f"/{route}")
            assert answer.status_code == 200, answer.text
            ids[route] = answer.json()["task_id"]
        await manager.drain()
        for route, task_id in ids.items():
            assert isinstance(seen[route], fastapi.BackgroundTasks), route
            assert isinstance(seen[route], ManagedBackgroundTasks), route
            record = await manager.get_task(task_id)
            assert record is not None and record.status is TaskStatus.SUCCESS, route
        managed = await manager.get_task(ids["managed"])
        assert managed is not None
        assert (managed.result, managed.tags, managed.idempotency_key) == (
            "b@example.com!",
            {"t": "1"},
            "k1",
        )
        depends = await manager.get_task(ids["depends"])
        assert depends is not None and depends.priority == 3
    assert taskflow.BackgroundTasks is ManagedBackgroundTasks


@sqlite_only
async def test_registry_lookups_answer_as_in_fastapi_taskflow(database_url: str) -> None:
    _app, manager, seen = build(database_url)
    send_email = seen["send_email"]
    config = manager.registry.get_config(send_email)
    assert isinstance(config, TaskConfig) and config.retries == 2
    assert manager.registry.get_by_name("mailer") == (send_email, config)
    assert manager.registry.get_by_name("send_email") is None  # registered under its name=
    assert manager.registry.is_registered(send_email)

    def other(x: int) -> None: ...

    assert manager.registry.get_config(other) is None
    assert not manager.registry.is_registered(other)


@pytest.mark.parametrize("backend_name", ["sqlite", "postgres"], indirect=True)
async def test_store_reads_the_database_from_sync_and_async_routes(database_url: str) -> None:
    app, manager, _seen = build(database_url)
    with pytest.raises(NotStartedError):
        await asyncio.to_thread(manager.store.get, "anything")
    async with serve(app) as client:
        task_id = (await client.post("/plain")).json()["task_id"]
        await manager.drain()
        for route in ("sync-store", "async-store"):
            answer = (await client.get(f"/{route}/{task_id}")).json()
            assert answer["status"] == "success", route
            assert answer["listed"] == [task_id], route
            missing = (await client.get(f"/{route}/no-such-task")).json()
            assert missing["status"] is None, route
        refused = (await client.get(f"/async-store-blocking/{task_id}")).json()["refused"]
        assert refused and "await task_manager.store.aget(task_id)" in refused
        # From a thread of the test's own (the manager's loop is free): the sync form works.
        record = await asyncio.to_thread(manager.store.get, task_id)
        assert record is not None and record.task_id == task_id
        with pytest.raises(BlockingCallError):
            manager.store.list()  # on the loop's own thread


@sqlite_only
async def test_metrics_success_rate_is_zero_before_anything_finished(database_url: str) -> None:
    app, _manager, _seen = build(database_url)
    async with serve(app) as client:
        metrics = (await client.get("/tasks/metrics")).json()
    assert metrics["total"] == 0
    assert metrics["success_rate"] == 0.0


def test_server_backends_take_url_by_keyword() -> None:
    postgres = PostgresBackend(url="postgresql://db.example/app")
    mysql = MySQLBackend(url="mysql://db.example/app")
    assert postgres.database_url == postgres.url == "postgresql://db.example/app"
    assert mysql.database_url == "mysql://db.example/app"
    assert PostgresBackend("postgresql://x/y").url == "postgresql://x/y"
    assert PostgresBackend(database_url="postgresql://x/y").url == "postgresql://x/y"
    manager = TaskManager(snapshot_backend=PostgresBackend(url="postgresql://db.example/app"))
    assert manager.target.url.drivername == "postgresql+asyncpg"
    with pytest.raises(taskflow.ConfigurationError):
        PostgresBackend()
