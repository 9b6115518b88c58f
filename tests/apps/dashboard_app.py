"""A FastAPI app for the browser tests of the dashboard, served by uvicorn in a subprocess.

* ``TASKFLOW_DATABASE_URL``: the database (required).
* ``DASHBOARD_AUTH``: "1" to require a login (users ``admin``/``admin-pass`` and
  ``viewer``/``viewer-pass``, read-only).

Its title and one function name are hostile on purpose: the dashboard must
show them as text.  ``POST /run/{kind}`` enqueues one task of each kind the
tests need and returns its id.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import FastAPI, HTTPException

from taskflow import TaskAdmin, TaskManager, task_log
from tests.apps.hostile import HOSTILE_HTML, HOSTILE_NAME, HOSTILE_QUOTES, HOSTILE_TITLE

task_manager = TaskManager(
    database_url=os.environ["TASKFLOW_DATABASE_URL"],
    lease_seconds=3.0,
    poll_interval=0.2,
    shutdown_grace=2.0,
)
app = FastAPI(title="taskflow dashboard tests")
auth: Any = None
if os.environ.get("DASHBOARD_AUTH") == "1":
    auth = [("admin", "admin-pass"), ("viewer", "viewer-pass", "viewer")]
TaskAdmin(
    app,
    task_manager,
    title=HOSTILE_TITLE,
    display_func_args=True,
    auth=auth,
    secret_key="dashboard-tests-secret-key-0123456789abcdef",
    poll_interval=0.5,
)


@task_manager.task()
async def quick(n: int) -> int:
    task_log(f"quick {n} done")
    return n


@task_manager.task()
async def slow(seconds: float) -> str:
    task_log("starting")
    await asyncio.sleep(seconds)
    task_log("--- finished ---")
    return "ok"


@task_manager.task()
async def fails(message: str) -> None:
    raise RuntimeError(message)


class QuotaExceeded(RuntimeError):
    """Never retried by ``later``: its card names it, with the full path as the pill's title."""


@task_manager.task(
    retries=1, delay=600.0, max_delay=900.0, retry_on=RuntimeError, dont_retry_on=QuotaExceeded
)
async def later(message: str) -> None:
    """Fails once, then waits ten minutes for its retry: a pending task to cancel."""
    raise RuntimeError(message)


@task_manager.task(name=HOSTILE_NAME)
async def hostile(payload: str, *, note: str = HOSTILE_QUOTES) -> None:
    task_log(HOSTILE_HTML)
    task_log(HOSTILE_QUOTES)
    raise ValueError(f"{HOSTILE_HTML} {HOSTILE_QUOTES}")


@task_manager.schedule(every=3600, name="hourly_report")
async def hourly_report() -> None:
    task_log("report sent")


KINDS = {
    "quick": lambda: (quick, (1,), {}, None),
    "slow": lambda: (slow, (0.8,), {}, None),
    "logged": lambda: (slow, (0.0,), {}, None),
    "fails": lambda: (fails, ('=HYPERLINK("http://x")\nsecond line',), {}, None),
    "later": lambda: (later, ("not yet",), {}, None),
    "hostile": lambda: (
        hostile,
        (HOSTILE_HTML,),
        {"note": HOSTILE_QUOTES},
        {"who": HOSTILE_HTML, "quote": HOSTILE_QUOTES},
    ),
}


@app.post("/run/{kind}")
async def run(kind: str, count: int = 1) -> dict[str, Any]:
    if kind not in KINDS:
        raise HTTPException(404, f"unknown kind {kind}")
    ids = []
    for _ in range(count):
        func, args, kwargs, tags = KINDS[kind]()
        ids.append(await task_manager.enqueue(func, *args, tags=tags, **kwargs))
    return {"task_id": ids[0], "task_ids": ids}
