"""The quick start: a signup route whose email task is durable, retried and visible.

Run it with ``uvicorn examples.basic_app:app`` and try::

    curl -X POST "http://localhost:8000/signup?email=user@example.com"
    curl "http://localhost:8000/tasks"
    curl "http://localhost:8000/tasks/metrics"

The database defaults to ``tasks.db`` (SQLite) in the working directory; set
``TASKFLOW_DATABASE_URL`` to use PostgreSQL or MySQL/MariaDB instead (after
``taskflow db upgrade``).
"""

from __future__ import annotations

import os
import time

from fastapi import FastAPI

# taskflow's BackgroundTasks is FastAPI's, typed: add_task() returns the task id.
from taskflow import BackgroundTasks, TaskAdmin, TaskManager, task_log

task_manager = TaskManager(
    database_url=os.environ.get("TASKFLOW_DATABASE_URL", "sqlite:///tasks.db"),
)
app = FastAPI(title="taskflow quick start")
TaskAdmin(app, task_manager, auto_install=True)


@task_manager.task(retries=3, delay=1.0, backoff=2.0)
def send_email(address: str) -> None:
    time.sleep(0.05)
    task_log(f"Sending email to {address}")


@task_manager.task(retries=1, delay=0.5)
async def process_webhook(payload: dict[str, object]) -> None:
    task_log(f"Processing webhook: {payload}")


@app.post("/signup")
def signup(email: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    task_id = background_tasks.add_task(send_email, address=email)
    return {"task_id": task_id}


@app.post("/webhook")
async def webhook(payload: dict[str, object], background_tasks: BackgroundTasks) -> dict[str, str]:
    task_id = background_tasks.add_task(process_webhook, payload)
    return {"task_id": task_id}
