"""Calls a type checker must reject: each marked line must give exactly the marked error codes.

Checked by ``test_user_types.py``, never imported by the tests.
"""

from __future__ import annotations

from fastapi import FastAPI

from taskflow import BackgroundTasks, ManagedBackgroundTasks, TaskManager

task_manager = TaskManager()
app = FastAPI()


@task_manager.task()
def send_email(address: str) -> None:
    print(address)


@app.post("/wrong")
async def wrong(background_tasks: ManagedBackgroundTasks, plain: BackgroundTasks) -> None:
    background_tasks.add_task(send_email, 42)  # expect: arg-type
    background_tasks.add_task(send_email, adress="a@b.c")  # expect: call-arg
    background_tasks.add_task(send_email)  # expect: call-arg
    plain.add_task(send_email, "a@b.c", "extra")  # expect: call-arg
    background_tasks.with_options(priority=1).add_task(send_email, 42)  # expect: arg-type
    await task_manager.enqueue(send_email, address=42)  # expect: arg-type
    count: int = background_tasks.add_task(send_email, "a@b.c")  # expect: assignment
    send_email(42)  # expect: arg-type
    print(count)
