"""``executor="process"``: real worker processes, on every SQL backend.

Checks that a process task stores its result, logs, errors and executor;
that what cannot reach a worker is refused at ``add_task()`` with nothing
written; that a stuck task is stopped within ``process_shutdown_timeout``
(its process really gone, the event loop never blocked); and that cancelling
a running process task kills its worker before it is reported cancelled.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from taskflow import (
    ManagedBackgroundTasks,
    TaskAdmin,
    TaskArgumentError,
    TaskManager,
    TaskStatus,
)
from taskflow.exceptions import RegistrationError
from taskflow.runtime import process_worker
from taskflow.runtime.processes import ProcessExecutor
from tests.apps import process_tasks
from tests.polling import wait_for_status as wait_for

TERMINAL = {TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.INTERRUPTED}


def make(url: str, **options: Any) -> TaskManager:
    options.setdefault("poll_interval", 0.05)
    manager = TaskManager(database_url=url, **options)
    manager.task(executor="process")(process_tasks.square)
    manager.task(executor="process")(process_tasks.async_square)
    manager.task(executor="process", retries=1)(process_tasks.fails)
    manager.task(executor="process")(process_tasks.hang)
    manager.task(executor="process")(process_tasks.sleep_then_return)
    manager.task(executor="process")(process_tasks.dies)
    manager.task(executor="process", timeout=0.5)(process_tasks.hang_past_timeout)
    return manager


async def wait_for_file(path: Path, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} was never written")
        await asyncio.sleep(0.02)
    return path.read_text()


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_process_task_stores_result_logs_errors_and_executor(schema_db_url: str) -> None:
    manager = make(schema_db_url)
    await manager.startup()
    try:
        ok = await manager.enqueue(process_tasks.square, 12)
        coro = await manager.enqueue(process_tasks.async_square, 5)
        bad = await manager.enqueue(process_tasks.fails, "no such order")
        done = await wait_for(manager, ok, TERMINAL)
        done_async = await wait_for(manager, coro, TERMINAL)
        failed = await wait_for(manager, bad, TERMINAL)
        await manager.drain()
        done, done_async, failed = [
            await wait_for(manager, task_id, TERMINAL) for task_id in (ok, coro, bad)
        ]
    finally:
        await manager.shutdown()

    assert done.status is TaskStatus.SUCCESS, done.error
    assert done.executor == "process"
    result = done.result
    assert result["square"] == 144
    assert result["pid"] != os.getpid()  # it really ran in another process
    assert result["task_id"] == ok and result["attempt"] == 0  # with its task context
    assert [line.split(" ", 1)[1] for line in done.logs] == ["squaring", "done"]
    assert done.duration_ms is not None and done.duration_ms >= 0

    assert done_async.status is TaskStatus.SUCCESS and done_async.result == 25
    assert done_async.executor == "process"
    assert [line.split(" ", 1)[1] for line in done_async.logs] == ["async in a worker"]

    assert failed.status is TaskStatus.FAILED and failed.executor == "process"
    assert failed.retries_used == 1  # retried once, in a worker again
    assert failed.error == "ValueError: no such order"
    assert failed.stacktrace is not None
    assert "in the worker process" in failed.stacktrace
    assert "process_tasks.py" in failed.stacktrace  # the worker's own frames
    # Lines logged before each failure are stored, once per attempt.
    messages = [line.split(" ", 1)[1] for line in failed.logs]
    assert [m for m in messages if "Retry" not in m] == ["about to fail"] * 2


@pytest.mark.parametrize("backend_name", ["sqlite"])
async def test_unsendable_arguments_raise_at_add_task_and_write_nothing(
    schema_db_url: str,
) -> None:
    manager = make(schema_db_url)
    app = FastAPI()
    TaskAdmin(app, manager)
    refused: list[str] = []

    via_manager = Depends(manager.get_tasks)

    @app.post("/add/{kind}")
    async def add(kind: str, tasks: ManagedBackgroundTasks = via_manager) -> dict[str, Any]:
        lock = threading.Lock()
        sock = socket.socket()
        argument: Any = {"lock": lock, "socket": sock, "lambda": lambda: 1}[kind]
        try:
            tasks.add_task(process_tasks.square, argument)
        except TaskArgumentError as exc:
            refused.append(str(exc))
            return {"refused": True}
        finally:
            sock.close()
        return {"refused": False}

    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as client,
    ):
        for kind in ("lock", "socket", "lambda"):
            answer = await client.post(f"/add/{kind}")
            assert answer.json() == {"refused": True}, kind
        with pytest.raises(TaskArgumentError):
            await manager.enqueue(process_tasks.square, threading.Lock())
        await manager.flush()
        page = await manager.list_tasks()
    assert page.items == []  # nothing was written
    assert len(refused) == 3
    assert "argument 0 (lock)" in refused[0]


def test_function_that_cannot_be_shipped_without_cloudpickle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without cloudpickle the function goes by reference: a shadowed one cannot."""

    def shadow() -> None:
        return None

    original = process_tasks.sleep_then_return
    monkeypatch.setitem(sys.modules, "cloudpickle", None)  # import fails
    monkeypatch.setattr(process_tasks, "sleep_then_return", shadow)
    process_worker._shipped.clear()
    try:
        with pytest.raises(TaskArgumentError, match="install cloudpickle"):
            process_worker.ship_function(original)
        assert process_worker.ship_function(process_tasks.square)  # by reference: fine
    finally:
        process_worker._shipped.clear()


class Holder:
    def method(self) -> None:
        return None


def test_process_executor_needs_a_module_level_function(tmp_path: Path) -> None:
    manager = TaskManager(database_url=f"sqlite:///{tmp_path}/t.db")

    def closure() -> None:
        return None

    cases = [(lambda: None, "is a lambda"), (closure, "closure"), (Holder().method, "bound method")]
    for func, reason in cases:
        with pytest.raises(RegistrationError, match="module-level function") as info:
            manager.task(executor="process")(func)
        assert reason in str(info.value)
        assert "define it with def at the top level" in str(info.value)
    with pytest.raises(RegistrationError, match="closure"):
        manager.schedule(every=60, executor="process")(closure)


@pytest.mark.parametrize("backend_name", ["sqlite", "postgres"])
async def test_stuck_process_task_is_killed_at_shutdown_without_blocking_the_loop(
    schema_db_url: str, tmp_path: Path
) -> None:
    manager = make(schema_db_url, process_shutdown_timeout=0.5, shutdown_grace=10.0)
    await manager.startup()
    pid_file, marker = tmp_path / "pid", tmp_path / "marker"
    stuck = await manager.enqueue(process_tasks.hang, str(pid_file), str(marker))
    quick = await manager.enqueue(process_tasks.sleep_then_return, 0.2)
    pid = int(await wait_for_file(pid_file))
    await wait_for(manager, quick, {TaskStatus.SUCCESS})
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    started = time.monotonic()
    await manager.shutdown()
    took = time.monotonic() - started
    ticking.cancel()

    assert 0.45 <= took < 4.0, took  # waited process_shutdown_timeout, not shutdown_grace
    assert ticks >= 20, ticks  # the event loop kept running while shutdown waited
    assert not process_alive(pid)  # the stuck worker is gone, not orphaned
    assert not marker.exists()

    checker = TaskManager(database_url=schema_db_url)
    await checker.startup()
    try:
        record = await checker.get_task(stuck)
    finally:
        await checker.shutdown()
    assert record is not None and record.status is TaskStatus.INTERRUPTED
    assert record.executor == "process"
    # Logged before it hung: stored at once, not lost with the killed worker.
    assert [line.split(" ", 1)[1] for line in record.logs] == ["hanging"]


@pytest.mark.parametrize("backend_name", ["sqlite"])
async def test_process_task_finishing_within_the_timeout_completes_at_shutdown(
    schema_db_url: str,
) -> None:
    manager = make(schema_db_url, process_shutdown_timeout=20.0)
    await manager.startup()
    task_id = await manager.enqueue(process_tasks.sleep_then_return, 1.0)
    await wait_for(manager, task_id, {TaskStatus.RUNNING})
    await manager.shutdown()
    checker = TaskManager(database_url=schema_db_url)
    await checker.startup()
    try:
        record = await checker.get_task(task_id)
    finally:
        await checker.shutdown()
    assert record is not None and record.status is TaskStatus.SUCCESS
    assert record.result == "slept"


@pytest.mark.parametrize("backend_name", ["sqlite", "mysql"])
async def test_cancel_kills_the_worker_before_reporting_cancelled(
    schema_db_url: str, tmp_path: Path
) -> None:
    manager = make(schema_db_url)
    await manager.startup()
    try:
        pid_file, marker = tmp_path / "pid", tmp_path / "marker"
        task_id = await manager.enqueue(process_tasks.hang, str(pid_file), str(marker))
        pid = int(await wait_for_file(pid_file))
        record = await manager.cancel(task_id)
        assert record.status is TaskStatus.CANCELLED
        assert "worker process was killed" in (record.error or "")
        assert not process_alive(pid)  # stopped before the answer, not some time later
        await manager.flush()
        cancelled = await manager.get_task(task_id)
        assert cancelled is not None and cancelled.status is TaskStatus.CANCELLED
        assert [line.split(" ", 1)[1] for line in cancelled.logs] == ["hanging"]
        # The slot and a fresh worker serve the next task.
        after = await manager.enqueue(process_tasks.square, 3)
        done = await wait_for(manager, after, TERMINAL)
        assert done.status is TaskStatus.SUCCESS and done.result["pid"] != pid
    finally:
        await manager.shutdown()
    assert not marker.exists()


@pytest.mark.parametrize("backend_name", ["sqlite"])
async def test_timeout_and_crash_of_a_worker_fail_the_task(
    schema_db_url: str, tmp_path: Path
) -> None:
    manager = make(schema_db_url)
    await manager.startup()
    executor = manager.runtime.executors["process"]
    assert isinstance(executor, ProcessExecutor)
    try:
        pid_file = tmp_path / "pid"
        too_slow = await manager.enqueue(process_tasks.hang_past_timeout, str(pid_file))
        crash = await manager.enqueue(process_tasks.dies, 3)
        pid = int(await wait_for_file(pid_file))
        timed_out = await wait_for(manager, too_slow, TERMINAL)
        crashed = await wait_for(manager, crash, TERMINAL)
        assert not process_alive(pid)  # the timeout stopped the work, not just the wait
        after = await manager.enqueue(process_tasks.square, 2)
        assert (await wait_for(manager, after, TERMINAL)).status is TaskStatus.SUCCESS
        assert len(executor.worker_pids) >= 1
    finally:
        await manager.shutdown()
    assert timed_out.status is TaskStatus.FAILED
    assert "timeout of 0.5s" in (timed_out.error or "")
    assert crashed.status is TaskStatus.FAILED
    assert "worker process running this task died" in (crashed.error or "")
    assert executor.worker_pids == []  # every worker stopped at shutdown


@pytest.mark.parametrize("backend_name", ["sqlite"])
async def test_executors_example_app(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``examples/executors_app.py`` works as its docstring says."""
    monkeypatch.setenv("TASKFLOW_DATABASE_URL", db_url)
    sys.modules.pop("examples.executors_app", None)
    example = importlib.import_module("examples.executors_app")
    manager: TaskManager = example.task_manager
    transport = httpx.ASGITransport(app=example.app)
    async with (
        example.app.router.lifespan_context(example.app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as client,
    ):
        primes = (await client.post("/primes", params={"limit": 1000})).json()["task_id"]
        urgent = (await client.post("/notify", params={"user_id": 7, "urgent": True})).json()
        normal = (await client.post("/notify", params={"user_id": 8})).json()
        previews = (await client.post("/previews", json=["a.png", "b.png"])).json()
        counted = await wait_for(manager, primes, TERMINAL)
        notified = [
            await wait_for(manager, answer["task_id"], TERMINAL) for answer in (urgent, normal)
        ]
        made = [await wait_for(manager, tid, TERMINAL) for tid in previews["task_ids"]]
    sys.modules.pop("examples.executors_app", None)
    assert counted.status is TaskStatus.SUCCESS and counted.result == 168
    assert counted.executor == "process"
    assert [r.priority for r in notified] == [10, 1]
    assert all(r.status is TaskStatus.SUCCESS for r in notified)
    assert [r.result for r in made] == ["preview of a.png", "preview of b.png"]
