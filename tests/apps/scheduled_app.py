"""A FastAPI app with one sub-second schedule, served by uvicorn in subprocesses.

Several instances share one database; the test checks that each slot fired
once and each fired task ran once.  Configured from the environment:

* ``TASKFLOW_DATABASE_URL``: the database (required).
* ``SCHEDULE_EVERY``: the interval in seconds (default 0.2).
* ``TASKFLOW_INSTANCE_NAME``: how this process signs its journal lines.
* ``JOURNAL_DIR``: where it appends ``"{instance} {task_id}"`` for every run,
  fsynced, so a task that ran twice (on any instance) shows up twice.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from taskflow import TaskAdmin, TaskManager, get_task_context

INSTANCE = os.environ.get("TASKFLOW_INSTANCE_NAME") or f"pid{os.getpid()}"
JOURNAL_PATH = Path(os.environ.get("JOURNAL_DIR") or ".") / f"{INSTANCE}-{os.getpid()}.journal"

task_manager = TaskManager(
    database_url=os.environ["TASKFLOW_DATABASE_URL"],
    lease_seconds=3.0,
    poll_interval=0.2,
)
app = FastAPI(title="taskflow schedules drill")
TaskAdmin(app, task_manager)


@task_manager.schedule(every=float(os.environ.get("SCHEDULE_EVERY") or 0.2), name="beat")
async def beat() -> None:
    context = get_task_context()
    assert context is not None
    fd = os.open(JOURNAL_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{INSTANCE} {context.task_id}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


@app.get("/scheduler")
async def scheduler_stats() -> dict[str, Any]:
    """What this instance's scheduler did: slots fired, races lost, errors."""
    scheduler = task_manager.scheduler
    assert scheduler is not None
    stats = scheduler.stats
    return {
        "instance": INSTANCE,
        "fired": stats.fired,
        "lost": stats.lost,
        "duplicates": stats.duplicates,
        "errors": stats.errors,
    }
