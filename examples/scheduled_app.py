"""Scheduled tasks: an interval job, a cron job and one-off tasks at a time, each run once.

Run it with ``uvicorn examples.scheduled_app:app`` (start two or three on the
same database, on different ports: each slot still fires exactly once) and try::

    curl "http://localhost:8000/tasks/schedules"
    curl -X POST "http://localhost:8000/tasks/schedules/refresh_exchange_rates/pause"
    curl -X POST "http://localhost:8000/tasks/schedules/refresh_exchange_rates/resume"
    curl -X POST "http://localhost:8000/reports"
    curl "http://localhost:8000/tasks?source=scheduled"
    curl -X POST "http://localhost:8000/trials/42?days=14"      # a one-off, by run key
    curl -X POST "http://localhost:8000/trials/42?days=30"      # moves it
    curl "http://localhost:8000/trials"                         # what is armed
    curl -X DELETE "http://localhost:8000/trials/42"            # cancels it
    curl -X POST "http://localhost:8000/welcome/42"             # a task in 10 seconds

The cron job needs ``pip install "taskflow-sql[scheduler]"``. The database
defaults to ``tasks.db`` (SQLite) in the working directory; set
``TASKFLOW_DATABASE_URL`` to use PostgreSQL or MySQL/MariaDB instead (after
``taskflow db upgrade``).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from typing import Any

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


@task_manager.task(retries=1)
async def end_trial(user_id: int) -> None:
    """Runs once, when the user's trial ends, on whichever instance is up then."""
    task_log("Ending the trial", user_id=user_id)


@task_manager.task()
async def send_welcome(user_id: int) -> None:
    task_log("Sending the welcome email", user_id=user_id)


@app.post("/trials/{user_id}")
async def start_trial(user_id: int, days: float = 14) -> dict[str, Any]:
    """Arm (or move: same run key) the end of a user's trial."""
    armed = await task_manager.schedule_once(
        end_trial,
        user_id,
        run_at=datetime.now(timezone.utc) + timedelta(days=days),
        run_key=f"trial-end:{user_id}",
    )
    return {"task_id": armed.task_id, "fire_at": armed.fire_at.isoformat()}


@app.delete("/trials/{user_id}")
async def cancel_trial_end(user_id: int) -> dict[str, bool]:
    return {"cancelled": await task_manager.cancel_scheduled(f"trial-end:{user_id}")}


@app.get("/trials")
async def armed_trial_ends() -> list[dict[str, str]]:
    return [
        {"run_key": entry.run_key, "task_id": entry.task_id, "fire_at": entry.fire_at.isoformat()}
        for entry in await task_manager.list_scheduled()
    ]


@app.post("/welcome/{user_id}")
def welcome_later(user_id: int, background_tasks: BackgroundTasks) -> dict[str, str]:
    """A task for later without a run key: ``delay=`` seconds (typed: ``with_options``)."""
    task_id = background_tasks.with_options(delay=10).add_task(send_welcome, user_id)
    return {"task_id": task_id}
