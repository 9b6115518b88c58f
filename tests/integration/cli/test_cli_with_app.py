"""The command line beside a running app: what it asks for, an instance does.

A retry made with ``taskflow tasks retry`` is run by the app's dispatcher,
and ``taskflow schedules run-now`` makes the app's scheduler fire at once.
The command runs as ``python -m taskflow`` in a process of its own, as an
operator's shell would run it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from taskflow import TaskManager
from taskflow.models import TaskStatus
from taskflow.repository.base import TaskQuery, WriteBatch
from tests.conftest import EVERY_BACKEND
from tests.integration.cli.seeding import ROOT, task
from tests.polling import eventually, wait_for_status

pytestmark = pytest.mark.parametrize("backend_name", EVERY_BACKEND, indirect=True)
CALLS: list[str] = []


async def taskflow_command(*args: str, cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "taskflow", *args,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(cwd)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_an_instance_runs_the_retry_and_fires_the_schedule(
    database_url: str, tmp_path: Path
) -> None:
    manager = TaskManager(database_url=database_url, shutdown_grace=5.0)

    @manager.task(name="cli.flaky", retries=1)
    async def flaky() -> None:
        CALLS.append("flaky")

    @manager.schedule(every=3600, name="cli.beat")
    async def beat() -> None:
        CALLS.append("beat")

    CALLS.clear()
    await manager.startup()
    try:
        failed = task("cli.flaky", TaskStatus.FAILED, max_retries=1)
        await manager.repository.apply(WriteBatch(inserts=[failed]))

        status, out, err = await taskflow_command(
            "tasks", "retry", failed.task_id, "--url", database_url, cwd=tmp_path
        )
        assert status == 0, err
        new_id = out.split(" as ")[1].split()[0]
        done = await wait_for_status(manager, new_id, {TaskStatus.SUCCESS})
        assert done.retried_from == failed.task_id
        assert CALLS == ["flaky"]

        status, out, err = await taskflow_command(
            "schedules", "run-now", "cli.beat", "--url", database_url, cwd=tmp_path
        )
        assert status == 0, err
        assert out == "cli.beat is due now: a running app instance fires it within seconds\n"

        async def fired() -> bool:
            page = await manager.list_tasks(TaskQuery(func_name="cli.beat"))
            return any(r.status is TaskStatus.SUCCESS for r in page.items)

        await eventually(fired, timeout=30)
        assert CALLS == ["flaky", "beat"]
        [state] = await manager.list_schedules()
        assert state.next_run_at is not None and state.last_run_at is not None
        assert state.next_run_at > state.last_run_at  # the following run is an hour on
    finally:
        await manager.shutdown()


async def test_cancelling_a_task_another_instance_runs_fences_it_out(
    database_url: str, tmp_path: Path
) -> None:
    manager = TaskManager(database_url=database_url, shutdown_grace=5.0)
    release = asyncio.Event()

    @manager.task(name="cli.slow")
    async def slow() -> str:
        await release.wait()
        return "finished anyway"

    await manager.startup()
    try:
        task_id = await manager.enqueue(slow)
        await wait_for_status(manager, task_id, {TaskStatus.RUNNING})
        status, out, err = await taskflow_command(
            "tasks", "cancel", task_id, "--url", database_url, cwd=tmp_path
        )
        assert status == 0, err
        assert out == f"cancelled {task_id} (cli.slow, was running)\n"
        release.set()  # the attempt ends, but its instance no longer holds the task
        await manager.flush()
        record = await manager.get_task(task_id)
        assert record is not None and record.status is TaskStatus.CANCELLED
        assert record.result is None
        entries = await manager.list_audit()
        assert [(e.action, e.task_id) for e in entries] == [("cancel", task_id)]
    finally:
        await manager.shutdown()
