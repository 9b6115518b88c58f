"""A FastAPI app for the crash drills, served by uvicorn in a subprocess.

Configured from the environment so a test can start several instances on one
database:

* ``TASKFLOW_DATABASE_URL``: the database (required).
* ``TASKFLOW_LEASE_SECONDS`` (default 3), ``TASKFLOW_POLL_INTERVAL`` (0.2) and
  ``TASKFLOW_SHUTDOWN_GRACE`` (10): the manager's timings, short for tests.
* ``TASKFLOW_INSTANCE_NAME``: how this process signs its journal lines.
* ``JOURNAL_DIR``: where it writes its execution journal.

The journal is the ground truth about what actually ran: every execution
appends ``"{instance}:{tag}:start"`` before its work and ``"{instance}:{tag}:end"``
after it, to a file of this process's own, with ``O_APPEND`` and ``fsync``
before the task goes on.  A line written before a SIGKILL is therefore in the
file afterwards, and a task that ran twice shows up twice.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Annotated, Any

from fastapi import BackgroundTasks, FastAPI, Query

from taskflow import TaskAdmin
from tests.apps.drill_process import INSTANCE, append_line, manager_from_environment

task_manager = manager_from_environment()
app = FastAPI(title="taskflow crash drill")
TaskAdmin(app, task_manager, auto_install=True)


def journal(tag: str, event: str) -> None:
    """Append one line durably before the task goes on (safe from any thread)."""
    append_line(f"{INSTANCE}:{tag}:{event}\n")


@task_manager.task(name="slow")
async def slow(tag: str, seconds: float) -> str:
    journal(tag, "start")
    await asyncio.sleep(seconds)
    journal(tag, "end")
    return tag


@task_manager.task(name="slow_sync")
def slow_sync(tag: str, seconds: float) -> str:
    journal(tag, "start")
    time.sleep(seconds)
    journal(tag, "end")
    return tag


@task_manager.task(name="requeueable", requeue_on_interrupt=True)
async def requeueable(tag: str, seconds: float) -> str:
    journal(tag, "start")
    await asyncio.sleep(seconds)
    journal(tag, "end")
    return tag


@task_manager.task(name="notify")
async def notify(tag: str) -> str:
    journal(tag, "start")
    journal(tag, "end")
    return tag


Seconds = Annotated[list[float], Query()]


def _add_all(
    background_tasks: BackgroundTasks, func: Any, tag: str, seconds: list[float]
) -> dict[str, Any]:
    """One task per ``seconds`` value, added in order by one request.

    FastAPI runs one request's tasks one after the other, so with several
    values the first runs while the later ones wait as ``pending`` rows.
    Their tags are ``tag`` (one value) or ``tag.0``, ``tag.1``...
    """
    tags = [tag] if len(seconds) == 1 else [f"{tag}.{i}" for i in range(len(seconds))]
    ids = [background_tasks.add_task(func, t, s) for t, s in zip(tags, seconds, strict=True)]
    return {"task_id": ids[0], "task_ids": ids, "tags": tags, "instance": INSTANCE}


@app.post("/slow")
async def post_slow(
    tag: str,
    background_tasks: BackgroundTasks,
    seconds: Seconds = [1.0],  # noqa: B006
) -> dict[str, Any]:
    return _add_all(background_tasks, slow, tag, seconds)


@app.post("/slow_sync")
async def post_slow_sync(
    tag: str,
    background_tasks: BackgroundTasks,
    seconds: Seconds = [1.0],  # noqa: B006
) -> dict[str, Any]:
    return _add_all(background_tasks, slow_sync, tag, seconds)


@app.post("/requeueable")
async def post_requeueable(
    tag: str,
    background_tasks: BackgroundTasks,
    seconds: Seconds = [1.0],  # noqa: B006
) -> dict[str, Any]:
    return _add_all(background_tasks, requeueable, tag, seconds)


@app.post("/notify")
async def post_notify(
    tag: str, background_tasks: BackgroundTasks, key: str | None = None
) -> dict[str, Any]:
    task_id = background_tasks.add_task(notify, tag, idempotency_key=key)
    return {"task_id": task_id, "instance": INSTANCE}


@app.post("/notify_sync")
def post_notify_sync(
    tag: str, background_tasks: BackgroundTasks, key: str | None = None
) -> dict[str, Any]:
    """The same from a plain ``def`` route (FastAPI's thread pool)."""
    task_id = background_tasks.add_task(notify, tag, idempotency_key=key)
    return {"task_id": task_id, "instance": INSTANCE}


@app.get("/instance")
async def instance() -> dict[str, Any]:
    return {"name": INSTANCE, "instance_id": task_manager.instance_id, "pid": os.getpid()}
