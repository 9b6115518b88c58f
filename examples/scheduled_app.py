"""Scheduled tasks: an interval job and a cron job, each slot fired once across all instances.

Run it with ``uvicorn examples.scheduled_app:app`` (start two or three on the
same database, on different ports: each slot still fires exactly once) and try::

    curl "http://localhost:8000/tasks/schedules"
    curl -X POST "http://localhost:8000/tasks/schedules/refresh_exchange_rates/pause"
    curl -X POST "http://localhost:8000/tasks/schedules/refresh_exchange_rates/resume"
    curl -X POST "http://localhost:8000/reports"
    curl "http://localhost:8000/tasks?source=scheduled"

The cron job needs ``pip install "taskflow-sql[scheduler]"``. The database
defaults to ``tasks.db`` (SQLite) in the working directory; set
``TASKFLOW_DATABASE_URL`` to use PostgreSQL or MySQL/MariaDB instead (after
``taskflow db upgrade``).
"""

from __future__ import annotations

import os

from fastapi import FastAPI

# taskflow's BackgroundTasks is FastAPI's, typed: add_task() returns the task id.
from taskflow import BackgroundTasks, TaskAdmin, TaskManager, task_log

task_manager = TaskManager(
    database_url=os.environ.get("TASKFLOW_DATABASE_URL", "sqlite:///tasks.db"),
)
app = FastAPI(title="taskflow scheduled tasks")
TaskAdmin(app, task_manager, auto_install=True)


@task_manager.schedule(every=30, run_on_startup=True, retries=2, delay=1.0)
async def refresh_exchange_rates() -> None:
    """Every 30 seconds, and once when the app starts; retried twice if it fails."""
    task_log("Refreshing exchange rates")


@task_manager.schedule(cron="0 9 * * 1-5", timezone="Europe/Paris")
def send_daily_report() -> None:
    """At 09:00 Paris time on weekdays, whatever the server's timezone (and across DST)."""
    task_log("Sending the daily report")


@app.post("/reports")
def send_report_now(background_tasks: BackgroundTasks) -> dict[str, str]:
    """A scheduled function is also a normal task: enqueue it by hand."""
    task_id = background_tasks.add_task(send_daily_report)
    return {"task_id": task_id}
