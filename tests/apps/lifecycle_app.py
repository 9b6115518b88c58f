"""A FastAPI app for the start-and-stop tests, served by uvicorn in a subprocess.

Configured from the environment (see ``tests/apps/drill_process.py``):
``TASKFLOW_DATABASE_URL`` (required), ``TASKFLOW_LEASE_SECONDS``,
``TASKFLOW_POLL_INTERVAL``, ``TASKFLOW_SHUTDOWN_GRACE``,
``TASKFLOW_ACKNOWLEDGE_TIMEOUT``, ``TASKFLOW_INSTANCE_NAME`` and ``JOURNAL_DIR``.

* ``GET /ready``: ``task_manager.readiness_router()``;
* ``POST /add``: adds a task with ``Depends(task_manager.get_tasks)``; the
  response waits for the commit (``acknowledge="committed"``);
* ``POST /enqueue``: ``await task_manager.enqueue(...)``.

Both answer ``{"task_id": ...}``.  The task appends ``"{task_id} ran"`` to this
process's journal (durably), the ground truth about what ran.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI

from taskflow import ManagedBackgroundTasks, get_task_context
from tests.apps.drill_process import append_line, manager_from_environment

task_manager = manager_from_environment()
app = FastAPI(title="taskflow lifecycle")
task_manager.init_app(app)
app.include_router(task_manager.readiness_router())


get_tasks = Depends(task_manager.get_tasks)


@task_manager.task(name="lifecycle_note")
async def note() -> None:
    context = get_task_context()
    assert context is not None
    append_line(f"{context.task_id} ran\n")


@app.post("/add")
async def add(tasks: ManagedBackgroundTasks = get_tasks) -> Any:
    return {"task_id": tasks.add_task(note)}


@app.post("/enqueue")
async def enqueue() -> Any:
    return {"task_id": await task_manager.enqueue(note)}
