"""Executors, priority and eager dispatch in one small app.

Run it with ``uvicorn examples.executors_app:app`` and try::

    curl -X POST "http://localhost:8000/primes?limit=300000"      # a worker process
    curl -X POST "http://localhost:8000/notify?user_id=7&urgent=true"
    curl -X POST "http://localhost:8000/previews" \\
         -H "content-type: application/json" -d '["a.png", "b.png"]'
    curl "http://localhost:8000/tasks"

* ``count_primes`` is CPU-bound: it runs in a worker process (outside the web
  process's GIL), at most ``max_process_workers`` at a time; ``timeout=``
  kills its worker if it runs too long.
* ``notify`` has a default priority of 1; urgent calls pass ``priority=10``.
  At most ``max_concurrent_tasks`` async tasks run at once; the others wait
  as ``pending``, highest priority first.
* ``make_preview`` is eager: each one starts while the request is still
  being handled, instead of one after another after the response.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import Depends, FastAPI

from taskflow import ManagedBackgroundTasks, TaskAdmin, TaskManager, task_log

task_manager = TaskManager(
    database_url=os.environ.get("TASKFLOW_DATABASE_URL", "sqlite:///tasks.db"),
    max_concurrent_tasks=4,
    max_process_workers=2,
    process_shutdown_timeout=10.0,
)
app = FastAPI(title="taskflow executors, priority and eager")
TaskAdmin(app, task_manager)
tasks_dependency = Depends(task_manager.get_tasks)


@task_manager.task(executor="process", timeout=120)
def count_primes(limit: int) -> int:
    """Module-level, so a worker process can import it."""
    sieve = bytearray([1]) * (limit + 1)
    sieve[0:2] = b"\x00\x00"
    for n in range(2, int(limit**0.5) + 1):
        if sieve[n]:
            sieve[n * n :: n] = bytearray(len(sieve[n * n :: n]))
    found = sum(sieve)
    task_log("counted", limit=limit, found=found)
    return found


@task_manager.task(priority=1, retries=2, delay=1.0)
async def notify(user_id: int) -> None:
    await asyncio.sleep(0.05)
    task_log(f"notified user {user_id}")


@task_manager.task(eager=True)
async def make_preview(name: str) -> str:
    await asyncio.sleep(0.05)
    return f"preview of {name}"


@app.post("/primes")
async def primes(limit: int, tasks: ManagedBackgroundTasks = tasks_dependency) -> dict[str, str]:
    return {"task_id": tasks.add_task(count_primes, limit)}


@app.post("/notify")
async def notify_user(
    user_id: int, urgent: bool = False, tasks: ManagedBackgroundTasks = tasks_dependency
) -> dict[str, str]:
    priority = 10 if urgent else None  # None: the decorator's default (1)
    # Options go through with_options(), so add_task() checks notify's own arguments.
    return {"task_id": tasks.with_options(priority=priority).add_task(notify, user_id)}


@app.post("/previews")
async def previews(
    names: list[str], tasks: ManagedBackgroundTasks = tasks_dependency
) -> dict[str, Any]:
    return {"task_ids": [tasks.add_task(make_preview, name) for name in names]}


if __name__ == "__main__":  # python -m examples.executors_app; workers are spawned, hence the guard
    import uvicorn

    uvicorn.run(app)
