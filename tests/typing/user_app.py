"""A user's app written against taskflow's types: ``mypy --strict`` must find nothing.

Checked by ``test_user_types.py``, never imported by the tests.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from fastapi import Depends, FastAPI

from taskflow import (
    BackgroundTasks,
    ManagedBackgroundTasks,
    PostgresBackend,
    ScheduledOnce,
    TaskAdmin,
    TaskConfig,
    TaskManager,
    TaskRecord,
)

task_manager = TaskManager(database_url="sqlite:///tasks.db")
app = FastAPI()
TaskAdmin(app, task_manager, auto_install=True, include_in_schema=False)
backend = PostgresBackend(url="postgresql://localhost/app")


@task_manager.task(retries=3, delay=1.0)
def send_email(address: str, subject: str = "hello") -> None:
    print(address, subject)


@task_manager.schedule(every=60)
async def tidy_up() -> int:
    return 0


# The decorators return the function itself, with its own type.
def send(address: str) -> None:
    send_email(address, subject="direct call")


async def tidy() -> int:
    return await tidy_up()


@app.post("/managed")
def managed(email: str, background_tasks: ManagedBackgroundTasks) -> dict[str, str]:
    task_id = background_tasks.add_task(send_email, address=email)
    return {"task_id": task_id}


@app.post("/plain")
async def plain(email: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    task_id = background_tasks.add_task(send_email, email, "welcome")
    keyed = background_tasks.with_options(idempotency_key=email, priority=5).add_task(
        send_email, address=email
    )
    return {"task_id": task_id, "keyed": keyed}


@app.post("/depends")
def depends(
    email: str, tasks: Annotated[ManagedBackgroundTasks, Depends(task_manager.get_tasks)]
) -> dict[str, str]:
    return {"task_id": tasks.add_task(send_email, address=email)}


@app.post("/enqueue")
async def enqueue(email: str) -> dict[str, str]:
    task_id: str = await task_manager.enqueue(send_email, email)
    tagged = await task_manager.with_options(tags={"kind": "mail"}).enqueue(send_email, email)
    later = await task_manager.with_options(delay=timedelta(minutes=5)).enqueue(send_email, email)
    return {"task_id": task_id, "tagged": tagged, "later": later}


@app.post("/later")
async def at_a_time(email: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    when = datetime.now(timezone.utc) + timedelta(days=1)
    soon = background_tasks.with_options(delay=30).add_task(send_email, address=email)
    armed: ScheduledOnce = await task_manager.schedule_once(
        send_email, email, run_at=when, run_key=f"mail:{email}"
    )
    cancelled: bool = await task_manager.cancel_scheduled(armed.run_key)
    listed: list[ScheduledOnce] = await task_manager.list_scheduled(before=when)
    return {"soon": soon, "armed": armed.task_id, "done": f"{cancelled} {len(listed)}"}


@app.get("/store/{task_id}")
def from_store(task_id: str) -> dict[str, Any]:
    record: TaskRecord | None = task_manager.store.get(task_id)
    newest: list[TaskRecord] = task_manager.store.list()
    config: TaskConfig | None = task_manager.registry.get_config(send_email)
    found = task_manager.registry.get_by_name("send_email")
    registered: bool = task_manager.registry.is_registered(send_email)
    return {
        "status": None if record is None else record.status.value,
        "count": len(newest),
        "retries": None if config is None else config.retries,
        "found": found is not None and found[1].retries == 3,
        "registered": registered,
    }


@app.get("/store-async/{task_id}")
async def from_store_async(task_id: str) -> dict[str, Any]:
    record = await task_manager.store.aget(task_id)
    return {"found": record is not None, "count": len(await task_manager.store.alist())}
