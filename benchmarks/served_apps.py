"""The apps that ``served_overhead.py`` serves with uvicorn, one per process.

``SERVED_SYSTEM`` chooses the app (``plain``, ``taskflow`` or ``peer``) and
``SERVED_DATABASE`` its database: a SQLAlchemy URL for taskflow, a SQLite path
for the peer's snapshot.  ``SERVED_ACKNOWLEDGE``, when set, is passed to
taskflow's ``TaskManager(acknowledge=...)``; ``SERVED_FREEZE_GC=1`` sets its
``freeze_gc_at_startup=True``.  Every app has ``POST /work``, which adds one no-op
task and returns a small JSON body, and ``GET /ping``, which answers once the
app has started and names the event loop's module.

    SERVED_SYSTEM=plain uvicorn served_apps:app --app-dir benchmarks
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import BackgroundTasks, FastAPI


async def anoop(n: int) -> None:
    return None


def plain_app() -> FastAPI:
    app = FastAPI()

    @app.post("/work")
    async def work(background_tasks: BackgroundTasks) -> dict[str, bool]:
        background_tasks.add_task(anoop, 1)
        return {"ok": True}

    return app


def add_work_route(app: FastAPI, func: Any) -> None:
    """``POST /work``: one task of ``func`` through the request's (managed) BackgroundTasks."""

    @app.post("/work")
    async def work(background_tasks: BackgroundTasks) -> dict[str, str]:
        task_id: str = background_tasks.add_task(func, 1)  # type: ignore[func-returns-value, assignment]
        return {"task_id": task_id}


def taskflow_app(database_url: str) -> FastAPI:
    from taskflow import TaskAdmin, TaskManager

    acknowledge = os.environ.get("SERVED_ACKNOWLEDGE")
    options: dict[str, Any] = {"acknowledge": acknowledge} if acknowledge else {}
    if os.environ.get("SERVED_FREEZE_GC"):
        options["freeze_gc_at_startup"] = True
    manager = TaskManager(database_url=database_url, **options)
    app = FastAPI()
    TaskAdmin(app, manager, auto_install=True, auth=False)
    add_work_route(app, manager.task()(anoop))
    return app


def peer_app(snapshot_db: str) -> FastAPI:
    """The peer fastapi-taskflow's quick start, with its SQLite snapshot."""
    from fastapi_taskflow import TaskAdmin, TaskManager  # type: ignore[import-not-found, import-untyped, unused-ignore]

    manager = TaskManager(snapshot_db=snapshot_db)
    app = FastAPI()
    TaskAdmin(app, manager, auto_install=True, auth=False)
    add_work_route(app, manager.task()(anoop))
    return app


def build(system: str, database: str) -> FastAPI:
    if system == "plain":
        built = plain_app()
    elif system == "taskflow":
        built = taskflow_app(database)
    elif system == "peer":
        built = peer_app(database)
    else:
        raise RuntimeError(f"SERVED_SYSTEM must be plain, taskflow or peer, not {system!r}")

    @built.get("/ping")
    async def ping() -> dict[str, str]:
        return {"loop": type(asyncio.get_running_loop()).__module__}

    return built


app = build(os.environ.get("SERVED_SYSTEM", "plain"), os.environ.get("SERVED_DATABASE", ""))
