"""What the Redis end-to-end tests share: task functions, a key prefix per test, the apps.

Every test builds its managers from a ``redis://...?key_prefix=<prefix>`` URL
(or ``RedisBackend``) of a prefix of its own (``Deployment``), whose keys the
``deployment`` fixture (``conftest.py``) deletes when the test ends.  Apps run
through their lifespan behind an in-process httpx client (``serving``);
"another instance" is a second ``TaskManager`` on the same prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import redis
from fastapi import BackgroundTasks, Depends, FastAPI

from taskflow import (
    ManagedBackgroundTasks,
    TaskManager,
    TaskStatus,
    get_task_context,
)
from tests.stores import delete_redis_prefix

CALLS: list[str] = []  # what the task functions below were called with, in order
STARTED: dict[str, asyncio.Event] = {}  # tag -> set when a `hold` task with that tag started
STOPPED: list[str] = []  # tags of `hold` tasks that were cancelled while running
FAIL_TIMES: dict[str, int] = {}  # tag -> how many more times `flaky` fails for it
SLOW_FIRST: list[float] = []  # `slow_once` sleeps this long on its first call only
TERMINAL = {TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.INTERRUPTED, TaskStatus.CANCELLED}


def clear_records() -> None:
    """Forget what the task functions recorded: each test starts from nothing."""
    CALLS.clear()
    STARTED.clear()
    STOPPED.clear()
    FAIL_TIMES.clear()
    SLOW_FIRST.clear()


# -- task functions ---------------------------------------------------------------------


async def remember(tag: str) -> dict[str, str]:
    CALLS.append(tag)
    return {"tag": tag, "ran": "loop"}


def remember_sync(tag: str) -> dict[str, str]:
    CALLS.append(tag)
    return {"tag": tag, "ran": "thread"}


async def flaky(tag: str) -> str:
    CALLS.append(tag)
    if FAIL_TIMES.get(tag, 0) > 0:
        FAIL_TIMES[tag] -= 1
        raise RuntimeError(f"{tag} failed on purpose")
    return f"ok {tag}"


async def always_fails(tag: str) -> None:
    CALLS.append(tag)
    raise ValueError(f"{tag} never works")


async def hold(tag: str, seconds: float = 30.0) -> str:
    """Runs until cancelled (or ``seconds``); says when it started and when it was stopped."""
    CALLS.append(tag)
    STARTED.setdefault(tag, asyncio.Event()).set()
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        STOPPED.append(tag)
        raise
    return tag


async def slow_once(tag: str) -> str:
    """Sleeps ``SLOW_FIRST[0]`` seconds on its first call, returns at once after."""
    CALLS.append(tag)
    if SLOW_FIRST:
        await asyncio.sleep(SLOW_FIRST.pop())
    return tag


async def slow_requeued(tag: str) -> str:
    return await slow_once(tag)


async def beat() -> str:
    context = get_task_context()
    assert context is not None
    CALLS.append(context.task_id)
    return context.task_id


def register(manager: TaskManager) -> TaskManager:
    manager.task()(remember)
    manager.task()(remember_sync)
    manager.task(retries=2, delay=0.05)(flaky)
    manager.task(retries=1, delay=0.05)(always_fails)
    manager.task()(hold)
    manager.task(requeue_on_interrupt=True)(slow_requeued)
    manager.task()(slow_once)
    return manager


# -- fixtures: a prefix of the test's own, managers on it, keys deleted after --------------


class Deployment:
    """One key prefix on the test Redis, and the managers the test started on it."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.prefix = "t" + uuid.uuid4().hex[:12]
        self.url = f"{server_url}?key_prefix={self.prefix}"
        self.managers: list[TaskManager] = []

    def manager(self, url: str | None = None, **options: Any) -> TaskManager:
        """A manager on this prefix (or ``url``) with the test task functions registered."""
        options.setdefault("poll_interval", 0.05)
        options.setdefault("shutdown_grace", 2.0)
        if "snapshot_backend" not in options:
            options["database_url"] = url or self.url
        built = register(TaskManager(**options))
        self.managers.append(built)
        return built

    async def started(self, **options: Any) -> TaskManager:
        built = self.manager(**options)
        await built.startup()
        return built

    def stored_keys(self) -> list[bytes]:
        client = redis.Redis.from_url(self.server_url)
        try:
            return list(client.scan_iter(match=f"{{{self.prefix}}}:*", count=1000))
        finally:
            client.close()

    def delete_keys(self) -> None:
        delete_redis_prefix(self.server_url, self.prefix)


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def add_task_routes(app: FastAPI, manager: TaskManager) -> None:
    """POST routes adding ``remember`` / ``remember_sync`` with every injection pattern."""
    get_tasks = Depends(manager.get_tasks)

    @app.post("/depends-async/{tag}")
    async def depends_async(tag: str, tasks: ManagedBackgroundTasks = get_tasks) -> Any:
        return {"task_id": tasks.add_task(remember, tag)}

    @app.post("/depends-sync/{tag}")
    def depends_sync(tag: str, tasks: ManagedBackgroundTasks = get_tasks) -> Any:
        return {"task_id": tasks.add_task(remember_sync, tag)}

    @app.post("/plain-async/{tag}")
    async def plain_async(tag: str, background_tasks: BackgroundTasks) -> Any:
        assert isinstance(background_tasks, ManagedBackgroundTasks)
        return {"task_id": background_tasks.add_task(remember, tag)}

    @app.post("/plain-sync/{tag}")
    def plain_sync(tag: str, background_tasks: BackgroundTasks) -> Any:
        assert isinstance(background_tasks, ManagedBackgroundTasks)
        return {"task_id": background_tasks.add_task(remember_sync, tag)}

    @app.post("/enqueue/{tag}")
    async def enqueue(tag: str) -> Any:
        return {"task_id": await manager.enqueue(remember, tag)}


ROUTES = {  # route -> (func_name, executor, result's "ran")
    "depends-async": ("remember", "async", "loop"),
    "depends-sync": ("remember_sync", "thread", "thread"),
    "plain-async": ("remember", "async", "loop"),
    "plain-sync": ("remember_sync", "thread", "thread"),
    "enqueue": ("remember", "async", "loop"),
}


def free_port() -> int:
    """A port of 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def refusing_app(manager: TaskManager) -> FastAPI:
    app = FastAPI()
    manager.init_app(app)
    manager.install(app)
    add_task_routes(app, manager)
    app.include_router(manager.readiness_router())
    return app
