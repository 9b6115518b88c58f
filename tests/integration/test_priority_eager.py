"""Priority and eager dispatch with real slots, threads and (for eager) real requests.

Tasks that wait for an execution slot wait in a local priority queue:
highest priority first, arrival order among equals.  While they wait they
are ``pending`` and their duration does not include the wait.  ``eager=True``
starts a task while the route is still running; a priority sends the task to
the queue at once and ``eager`` is then ignored; eager process tasks fall
back to after-response with a warning.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from taskflow import ManagedBackgroundTasks, TaskAdmin, TaskManager, TaskStatus
from taskflow.exceptions import TaskArgumentError
from tests.apps import process_tasks
from tests.polling import wait_for_status as wait_for

TERMINAL = {TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.INTERRUPTED}
ORDER: list[str] = []
GATE: dict[str, Any] = {}


async def blocker() -> None:
    ORDER.append("blocker")
    await GATE["async"].wait()


async def job(label: str) -> str:
    ORDER.append(label)
    await asyncio.sleep(0.01)
    return label


async def plain_job(label: str) -> str:
    """No priority: after every task that has one, as in the database's claim order."""
    return await job(label)


def sync_blocker() -> None:
    ORDER.append("blocker")
    GATE["thread"].wait(10)


def sync_job(label: str) -> str:
    ORDER.append(label)
    time.sleep(0.01)
    return label


@pytest.fixture(autouse=True)
def _reset() -> Any:
    ORDER.clear()
    GATE.clear()
    yield
    if "thread" in GATE:
        GATE["thread"].set()


async def test_waiting_tasks_run_highest_priority_first_and_stay_pending(
    schema_db_url: str,
) -> None:
    GATE["async"] = asyncio.Event()
    manager = TaskManager(database_url=schema_db_url, max_concurrent_tasks=1)
    manager.task()(blocker)
    manager.task(priority=5)(job)  # the decorator's default, overridden per call
    manager.task()(plain_job)
    await manager.startup()
    try:
        busy = await manager.enqueue(blocker)
        await wait_for(manager, busy, {TaskStatus.RUNNING})
        waiting = {
            "unset": await manager.enqueue(plain_job, "unset"),
            "low": await manager.enqueue(job, "low", priority=1),
            "default-a": await manager.enqueue(job, "default-a"),  # 5, from the decorator
            "high-a": await manager.enqueue(job, "high-a", priority=9),
            "negative": await manager.enqueue(job, "negative", priority=-3),
            "high-b": await manager.enqueue(job, "high-b", priority=9),
            "default-b": await manager.enqueue(job, "default-b"),
        }
        await asyncio.sleep(0.3)  # they wait for the slot...
        for task_id in waiting.values():  # ...as pending, not running
            record = await manager.get_task(task_id)
            assert record is not None and record.status is TaskStatus.PENDING, record
            assert record.start_time is None
        released_at = time.monotonic()
        GATE["async"].set()
        records = {label: await wait_for(manager, tid, TERMINAL) for label, tid in waiting.items()}
    finally:
        await manager.shutdown()

    assert ORDER == [
        "blocker",
        "high-a",
        "high-b",
        "default-a",
        "default-b",
        "low",
        "negative",
        "unset",
    ]
    assert records["default-a"].priority == 5 and records["low"].priority == 1
    assert records["unset"].priority is None
    for label, record in records.items():
        assert record.status is TaskStatus.SUCCESS, label
        # Each ran about 10 ms; it waited 300 ms or more, which is not its duration.
        assert record.duration_ms is not None and record.duration_ms < 200, (label, record)
        assert record.start_time is not None and record.created_at is not None
        assert record.start_time - record.created_at >= timedelta(milliseconds=250)
    assert time.monotonic() - released_at < 10


@pytest.mark.parametrize("backend_name", ["sqlite"])
async def test_thread_tasks_wait_pending_for_a_free_thread_in_priority_order(
    schema_db_url: str,
) -> None:
    GATE["thread"] = threading.Event()
    manager = TaskManager(database_url=schema_db_url, max_sync_threads=1)
    manager.task()(sync_blocker)
    manager.task()(sync_job)
    await manager.startup()
    try:
        busy = await manager.enqueue(sync_blocker)
        await wait_for(manager, busy, {TaskStatus.RUNNING})
        ids = [
            await manager.enqueue(sync_job, label, priority=priority)
            for label, priority in [("b", 1), ("a", 2), ("c", 1), ("d", None)]
        ]
        await asyncio.sleep(0.2)
        statuses = [(await manager.get_task(task_id)).status for task_id in ids]  # type: ignore[union-attr]
        GATE["thread"].set()
        done = [await wait_for(manager, task_id, TERMINAL) for task_id in ids]
    finally:
        await manager.shutdown()
    assert statuses == [TaskStatus.PENDING] * 4  # the one thread is busy: nobody is "running"
    assert ORDER == ["blocker", "a", "b", "c", "d"]
    assert all(r.status is TaskStatus.SUCCESS and r.executor == "thread" for r in done)
    assert all(r.duration_ms is not None and r.duration_ms < 150 for r in done)


@pytest.mark.parametrize("backend_name", ["sqlite"])
async def test_per_call_priority_is_validated(schema_db_url: str) -> None:
    manager = TaskManager(database_url=schema_db_url)
    manager.task()(job)
    await manager.startup()
    try:
        for bad in ("high", 1.5, True):
            with pytest.raises(TaskArgumentError, match="priority must be an integer"):
                await manager.enqueue(job, "x", priority=bad)  # type: ignore[arg-type]
        assert (await manager.list_tasks()).items == []
    finally:
        await manager.shutdown()


class App:
    """A FastAPI app whose routes add tasks while recording what they see."""

    def __init__(self, url: str, **options: Any) -> None:
        self.manager = TaskManager(database_url=url, **options)
        self.app = FastAPI()
        TaskAdmin(self.app, self.manager)
        self.started: dict[str, asyncio.Event] = {}
        self.seen: list[str] = []
        self.row_during_run: dict[str, str | None] = {}
        manager = self.manager
        tasks_dependency = Depends(manager.get_tasks)

        @manager.task(name="observed")
        async def observed(label: str) -> str:
            context_record = await manager.get_task(_current_task_id())
            self.row_during_run[label] = context_record.status.value if context_record else None
            ORDER.append(label)
            self.started.setdefault(label, asyncio.Event()).set()
            return label

        self.observed = observed

        @self.app.post("/add")
        async def add(
            body: dict[str, Any], tasks: ManagedBackgroundTasks = tasks_dependency
        ) -> dict[str, Any]:
            ids = []
            for item in body["tasks"]:
                label = item["label"]
                self.started.setdefault(label, asyncio.Event())
                options = {k: v for k, v in item.items() if k in ("eager", "priority")}
                ids.append(tasks.add_task(observed, label, **options))
            for item in body["tasks"]:
                label = item["label"]
                # Up to "wait" s for a task expected to start; 0.3 s shows one that does not.
                patience = body.get("wait", 0.3) if item.get("eager") else 0.3
                try:
                    await asyncio.wait_for(self.started[label].wait(), patience)
                    self.seen.append(f"{label} started during the request")
                except asyncio.TimeoutError:
                    self.seen.append(f"{label} not started during the request")
            return {"ids": ids}

    @property
    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://t")


def _current_task_id() -> str:
    from taskflow import get_task_context

    context = get_task_context()
    assert context is not None
    return context.task_id


@pytest.fixture
async def served(schema_db_url: str) -> AsyncIterator[App]:
    built = App(schema_db_url, max_concurrent_tasks=1)
    async with built.app.router.lifespan_context(built.app):
        yield built
        await built.manager.drain()


async def test_eager_starts_during_the_request_after_its_row_is_committed(served: App) -> None:
    async with served.client as client:
        answer = await client.post(
            "/add",
            json={"tasks": [{"label": "eager", "eager": True}, {"label": "later"}], "wait": 2.0},
        )
        assert answer.status_code == 200, answer.text
        later_id = answer.json()["ids"][1]
        await wait_for(served.manager, later_id, TERMINAL)
    assert served.seen == [
        "eager started during the request",
        "later not started during the request",  # default: after the response
    ]
    # The eager task's row was committed (and visible to another connection)
    # before its code ran.
    assert served.row_during_run["eager"] in ("pending", "running")
    assert served.row_during_run["later"] in ("pending", "running")


@pytest.mark.parametrize("backend_name", ["sqlite"])
async def test_priority_wins_over_eager(served: App) -> None:
    """A priority queues the task at once; eager does not let it skip the queue."""
    GATE["async"] = asyncio.Event()
    served.manager.task()(blocker)
    busy = await served.manager.enqueue(blocker)
    await wait_for(served.manager, busy, {TaskStatus.RUNNING})
    async with served.client as client:
        answer = await client.post(
            "/add",
            json={
                "tasks": [
                    {"label": "eager-only", "eager": True},
                    {"label": "eager-low", "eager": True, "priority": 1},
                    {"label": "plain-high", "priority": 9},
                    {"label": "after-response"},
                ],
                "wait": 0.05,
            },
        )
        assert answer.status_code == 200, answer.text
        ids = answer.json()["ids"]
        for task_id in ids[:3]:  # dispatched during the request, all waiting for the slot
            record = await served.manager.get_task(task_id)
            assert record is not None and record.status is TaskStatus.PENDING
        GATE["async"].set()
        for task_id in ids:
            await wait_for(served.manager, task_id, TERMINAL)
    # Unset priorities come last, in arrival order: eager-only joined the queue
    # during the request, after-response only once the response was sent.
    assert ORDER == ["blocker", "plain-high", "eager-low", "eager-only", "after-response"]


@pytest.mark.parametrize("backend_name", ["sqlite"])
async def test_eager_process_task_falls_back_with_a_warning(schema_db_url: str) -> None:
    manager = TaskManager(database_url=schema_db_url)
    manager.task(executor="process", eager=True)(process_tasks.square)
    manager.task(executor="process")(process_tasks.async_square)
    app = FastAPI()
    TaskAdmin(app, manager)
    tasks_dependency = Depends(manager.get_tasks)
    status_in_route: list[str] = []

    @app.post("/square")
    async def square(tasks: ManagedBackgroundTasks = tasks_dependency) -> dict[str, Any]:
        task_id = tasks.add_task(process_tasks.square, 4)  # eager from the decorator
        with_priority = tasks.add_task(process_tasks.async_square, 3, eager=True, priority=2)
        await asyncio.sleep(0.2)
        record = await manager.get_task(task_id)
        status_in_route.append(record.status.value if record else "missing")
        return {"ids": [task_id, with_priority]}

    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as client,
    ):
        with pytest.warns(RuntimeWarning, match="eager=True is not supported") as caught:
            answer = await client.post("/square")
        assert answer.status_code == 200, answer.text
        first, second = answer.json()["ids"]
        done = await wait_for(manager, first, TERMINAL)
        prioritised = await wait_for(manager, second, TERMINAL)
    assert len(caught) == 1  # priority set: eager is ignored, so no warning for the second
    assert status_in_route == ["pending"]  # not started while the route ran
    assert done.status is TaskStatus.SUCCESS and done.executor == "process"
    assert prioritised.status is TaskStatus.SUCCESS and prioritised.result == 9
