"""A FastAPI app for the acknowledgement drills, served by uvicorn in a subprocess.

Configured from the environment, so a test can start several instances on one
database (or one behind a TCP proxy):

* ``TASKFLOW_DATABASE_URL``: the database (required).
* ``TASKFLOW_LEASE_SECONDS`` (default 3), ``TASKFLOW_POLL_INTERVAL`` (0.2),
  ``TASKFLOW_SHUTDOWN_GRACE`` (10) and ``TASKFLOW_ACKNOWLEDGE_TIMEOUT`` (10):
  the manager's timings, short for tests.
* ``TASKFLOW_INSTANCE_NAME``: names this process's journal file.
* ``JOURNAL_DIR``: where it writes its execution journal.

Every route adds one task and answers ``{"task_id": ...}``.  The routes cover
each way of getting the request's task list, from both kinds of route:

* ``/bt/async/{kind}``, ``/bt/sync/{kind}``: a plain ``BackgroundTasks``
  annotation (made durable by ``TaskAdmin(..., auto_install=True)``), in an
  ``async def`` and a ``def`` route;
* ``/dep/async/{kind}``, ``/dep/sync/{kind}``: ``Depends(task_manager.get_tasks)``.

``kind`` picks the task: ``async``, ``sync`` (thread executor), ``retrying``
(fails its first attempt, succeeds on the next; ``retries=2``) or ``failing``
(fails every attempt).  ``seconds`` is how long it works.

The journal is the ground truth about what actually ran: as its first action
every attempt appends ``"{task_id} {attempt} {pid} start"``, and a successful
one ``"{task_id} {attempt} {pid} end"`` as its last, to a file of this
process's own, with ``O_APPEND`` and ``fsync`` before the task goes on.  A
line written before a SIGKILL is in the file afterwards; an attempt that ran
twice has two ``start`` lines.  Only a successful attempt writes ``end``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Literal

from fastapi import BackgroundTasks, Depends, FastAPI

from taskflow import ManagedBackgroundTasks, TaskAdmin, get_task_context
from tests.apps.drill_process import INSTANCE, PID, append_line, manager_from_environment

task_manager = manager_from_environment()
app = FastAPI(title="taskflow acknowledgement drill")
TaskAdmin(app, task_manager, auto_install=True)


def journal(event: str) -> int:
    """Append this attempt's ``event`` line durably (safe from any thread); returns the attempt."""
    context = get_task_context()
    if context is None:
        raise RuntimeError("journal() called outside a task")
    append_line(f"{context.task_id} {context.attempt} {PID} {event}\n")
    return context.attempt


@task_manager.task(name="drill_async")
async def work_async(seconds: float) -> str:
    journal("start")
    await asyncio.sleep(seconds)
    journal("end")
    return "ok"


@task_manager.task(name="drill_sync")
def work_sync(seconds: float) -> str:
    journal("start")
    time.sleep(seconds)
    journal("end")
    return "ok"


@task_manager.task(name="drill_retrying", retries=2, delay=0.05)
async def work_retrying(seconds: float) -> str:
    attempt = journal("start")
    await asyncio.sleep(seconds)
    if attempt == 0:
        raise RuntimeError("the first attempt always fails")
    journal("end")
    return "ok"


@task_manager.task(name="drill_failing")
async def work_failing(seconds: float) -> str:
    journal("start")
    await asyncio.sleep(seconds)
    raise RuntimeError("this task always fails")


Kind = Literal["async", "sync", "retrying", "failing"]
TASKS: dict[str, Callable[[float], Any]] = {
    "async": work_async,
    "sync": work_sync,
    "retrying": work_retrying,
    "failing": work_failing,
}
get_tasks = Depends(task_manager.get_tasks)


# With auto_install, FastAPI builds a ManagedBackgroundTasks for the annotation
# below, whose add_task returns the task's id (BackgroundTasks' returns None).


@app.post("/bt/async/{kind}")
async def bt_async(kind: Kind, background_tasks: BackgroundTasks, seconds: float = 0.05) -> Any:
    return {"task_id": background_tasks.add_task(TASKS[kind], seconds)}


@app.post("/bt/sync/{kind}")
def bt_sync(kind: Kind, background_tasks: BackgroundTasks, seconds: float = 0.05) -> Any:
    return {"task_id": background_tasks.add_task(TASKS[kind], seconds)}


@app.post("/dep/async/{kind}")
async def dep_async(
    kind: Kind, seconds: float = 0.05, tasks: ManagedBackgroundTasks = get_tasks
) -> Any:
    return {"task_id": tasks.add_task(TASKS[kind], seconds)}


@app.post("/dep/sync/{kind}")
def dep_sync(kind: Kind, seconds: float = 0.05, tasks: ManagedBackgroundTasks = get_tasks) -> Any:
    return {"task_id": tasks.add_task(TASKS[kind], seconds)}


@app.get("/instance")
async def instance() -> dict[str, Any]:
    return {"name": INSTANCE, "instance_id": task_manager.instance_id, "pid": PID}
