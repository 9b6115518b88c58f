"""``taskflow.testing``: tasks run inline with the request, or captured without running."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from taskflow import (
    BackgroundTasks,
    ConfigurationError,
    NotStartedError,
    TaskAdmin,
    TaskArgumentError,
    TaskManager,
    task_log,
)
from taskflow.models import TaskStatus
from taskflow.repository.base import TaskQuery
from taskflow.testing import CapturedTask, capture, inline_tasks
from tests.conftest import EVERY_BACKEND

# Starlette 1.x's TestClient prefers the httpx2 package and warns when it finds httpx.
TESTCLIENT_WARNING = "ignore:Using .httpx. with .starlette.testclient."


@dataclass
class Shop:
    """An app whose routes add tasks, and what the tasks did."""

    manager: TaskManager
    app: FastAPI
    done: list[str] = field(default_factory=list)
    funcs: dict[str, Any] = field(default_factory=dict)


def make_shop(database_url: str) -> Shop:
    manager = TaskManager(database_url=database_url)
    app = FastAPI()
    TaskAdmin(app, manager, auto_install=True)
    shop = Shop(manager, app)

    @manager.task(name="receipt")
    def send_receipt(order: str) -> str:
        task_log(f"receipt for {order}")
        shop.done.append(f"receipt {order}")
        return f"sent {order}"

    @manager.task(name="ship")
    async def ship(order: str) -> None:
        await asyncio.sleep(0.05)
        shop.done.append(f"shipped {order}")
        # A task that adds a task: inline mode waits for that one too.
        await manager.enqueue(send_receipt, order)

    @manager.task(name="flaky", retries=2, delay=0.01)
    async def flaky(order: str) -> None:
        shop.done.append(f"attempt {order}")
        raise RuntimeError("carrier down")

    @app.post("/orders/{order}")
    async def place(order: str, background_tasks: BackgroundTasks) -> dict[str, str]:
        return {"task_id": background_tasks.add_task(ship, order)}

    @app.post("/flaky/{order}")
    def place_flaky(order: str, background_tasks: BackgroundTasks) -> dict[str, str]:
        return {"task_id": background_tasks.with_options(tags={"o": order}).add_task(flaky, order)}

    shop.funcs.update(receipt=send_receipt, ship=ship, flaky=flaky)
    return shop


@asynccontextmanager
async def serving(shop: Shop) -> AsyncIterator[httpx.AsyncClient]:
    async with shop.app.router.lifespan_context(shop.app):
        transport = httpx.ASGITransport(app=shop.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@pytest.mark.parametrize("backend_name", EVERY_BACKEND, indirect=True)
async def test_inline_requests_return_once_their_tasks_and_follow_ups_are_over(
    database_url: str,
) -> None:
    shop = make_shop(database_url)
    async with serving(shop) as client:
        with inline_tasks(shop.manager):
            response = await client.post("/orders/o1")
            assert shop.done == ["shipped o1", "receipt o1"]
            record = await shop.manager.get_task(response.json()["task_id"])
            assert record is not None and record.status is TaskStatus.SUCCESS

            response = await client.post("/flaky/o2")  # retries run too, with their delays
            record = await shop.manager.get_task(response.json()["task_id"])
            assert record is not None and record.status is TaskStatus.FAILED
            assert shop.done[-3:] == ["attempt o2"] * 3
        assert not shop.manager.drain_after_requests


async def test_inline_needs_an_app_wired_to_the_manager(tmp_path: Path) -> None:
    manager = TaskManager(database_url=f"sqlite:///{tmp_path}/tasks.db")
    with pytest.raises(ConfigurationError, match="init_app"), inline_tasks(manager):
        pass


@pytest.mark.parametrize("backend_name", EVERY_BACKEND, indirect=True)
async def test_capture_records_calls_and_runs_and_stores_nothing(database_url: str) -> None:
    shop = make_shop(database_url)
    async with serving(shop) as client:
        with capture(shop.manager) as captured:
            first = (await client.post("/orders/o1")).json()["task_id"]
            second = (await client.post("/flaky/o2")).json()["task_id"]
            third = await shop.manager.with_options(priority=3).enqueue(
                shop.funcs["receipt"], order="o3"
            )
        await asyncio.sleep(0.1)
        assert shop.done == []
        await shop.manager.drain()
        assert (await shop.manager.list_tasks(TaskQuery())).items == []
        assert captured.calls == [
            CapturedTask(first, "ship", shop.funcs["ship"], ("o1",), {}),
            CapturedTask(second, "flaky", shop.funcs["flaky"], ("o2",), {}, {"tags": {"o": "o2"}}),
            CapturedTask(
                third, "receipt", shop.funcs["receipt"], (), {"order": "o3"}, {"priority": 3}
            ),
        ]
        assert [call.task_id for call in captured.of(shop.funcs["receipt"])] == [third]
        assert len(captured.of("flaky")) == 1
        assert len({first, second, third}) == 3 and all(
            len(i) == 36 for i in (first, second, third)
        )

        # Outside the block, tasks run again.
        task_id = await shop.manager.enqueue(shop.funcs["receipt"], "o4")
        assert (await shop.manager.wait(task_id, timeout=10)).result == "sent o4"


async def test_capture_refuses_what_production_refuses(tmp_path: Path) -> None:
    shop = make_shop(f"sqlite:///{tmp_path}/tasks.db")
    async with serving(shop):
        with capture(shop.manager) as captured:
            with pytest.raises(TaskArgumentError):
                await shop.manager.enqueue(shop.funcs["receipt"], threading.Lock())  # type: ignore[arg-type]
            with pytest.raises(ConfigurationError, match="already active"), capture(shop.manager):
                pass
        assert len(captured) == 0


@pytest.mark.filterwarnings(TESTCLIENT_WARNING)
def test_a_test_client_without_its_lifespan_fails_the_same_way_every_time(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    shop = make_shop(f"sqlite:///{tmp_path}/tasks.db")
    for mode in (capture, inline_tasks, None, capture, inline_tasks):
        client = TestClient(shop.app)  # no `with`: the lifespan never runs
        helper = mode(shop.manager) if mode is not None else nullcontext()
        lifespan_message = r"with TestClient\(app\) as client"
        with helper, pytest.raises(NotStartedError, match=lifespan_message):
            client.post("/orders/o1")
    with TestClient(shop.app) as client, inline_tasks(shop.manager):
        assert client.post("/orders/o1").status_code == 200
        assert shop.done == ["shipped o1", "receipt o1"]
        record = shop.manager.wait_sync(client.post("/flaky/o2").json()["task_id"], timeout=10)
        assert record.status is TaskStatus.FAILED


@pytest.mark.filterwarnings(TESTCLIENT_WARNING)
def test_store_reads_and_wait_sync_from_the_test_thread(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    shop = make_shop(f"sqlite:///{tmp_path}/tasks.db")
    with TestClient(shop.app) as client:
        task_id = client.post("/orders/o1").json()["task_id"]
        record = shop.manager.wait_sync(task_id, timeout=10)  # without inline mode
        assert record.status is TaskStatus.SUCCESS
        stored = shop.manager.store.get(task_id)
        assert stored is not None and stored.status is TaskStatus.SUCCESS
