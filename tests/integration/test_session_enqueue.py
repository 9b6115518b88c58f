"""enqueue(session=...): the task exists exactly when the caller's transaction commits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from taskflow import TaskManager
from taskflow.db.tables import tasks_table as T
from taskflow.models import TaskStatus
from taskflow.settings import resolve_database_url

DONE: list[str] = []


async def remember(value: str) -> None:
    DONE.append(value)


async def wait_for_status(manager: TaskManager, task_id: str, status: TaskStatus) -> None:
    for _ in range(400):
        record = await manager.get_task(task_id)
        if record is not None and record.status is status:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"task {task_id} never reached {status}")


def app_engine(url: str) -> AsyncEngine:
    """An engine as the application would make it: SQLAlchemy defaults, not taskflow's."""
    return create_async_engine(resolve_database_url(url).url)


async def count(engine: Any, task_id: str) -> int:
    async with engine.connect() as conn:
        found = await conn.execute(select(func.count()).where(T.c.id == task_id))
        return int(found.scalar() or 0)


async def test_rollback_means_no_task_and_commit_means_it_runs(
    schema_db_url: str, engine: Any
) -> None:
    DONE.clear()
    manager = TaskManager(database_url=schema_db_url, poll_interval=5.0)
    manager.task(name="remember")(remember)
    await manager.startup()
    app = app_engine(schema_db_url)
    try:
        async with AsyncSession(app) as session, session.begin():
            rolled_back = await manager.enqueue(remember, "never", session=session)
            await session.rollback()
        assert await count(engine, rolled_back) == 0

        async with AsyncSession(app) as session, session.begin():
            committed = await manager.enqueue(remember, "kept", session=session)
            # Not visible to anyone before the caller commits.
            assert await count(engine, committed) == 0
        # poll_interval is 5 s: running at once proves the commit woke the dispatcher.
        await wait_for_status(manager, committed, TaskStatus.SUCCESS)
    finally:
        await manager.shutdown()
        await app.dispose()
    assert DONE == ["kept"]


async def test_sync_session(schema_db_url: str, engine: Any) -> None:
    DONE.clear()
    manager = TaskManager(database_url=schema_db_url, poll_interval=5.0)
    manager.task(name="remember")(remember)
    await manager.startup()
    app = app_engine(schema_db_url)
    try:
        async with app.connect() as conn:

            def in_sync_session(sync_conn: Any) -> str:
                from sqlalchemy.orm import Session

                with Session(bind=sync_conn) as session:
                    task_id = manager.add_to_session(session, remember, "sync")
                    session.commit()
                return task_id

            task_id = await conn.run_sync(in_sync_session)
            await conn.commit()
        await wait_for_status(manager, task_id, TaskStatus.SUCCESS)
    finally:
        await manager.shutdown()
        await app.dispose()
    assert DONE == ["sync"]


async def test_idempotency_key_in_session(schema_db_url: str, engine: Any) -> None:
    DONE.clear()
    manager = TaskManager(database_url=schema_db_url)
    manager.task(name="remember")(remember)
    await manager.startup()
    app = app_engine(schema_db_url)
    try:
        async with AsyncSession(app) as session, session.begin():
            first = await manager.enqueue(
                remember, "k", idempotency_key="session-key", session=session
            )
        second = await manager.enqueue(remember, "k", idempotency_key="session-key")
        await wait_for_status(manager, first, TaskStatus.SUCCESS)
    finally:
        await manager.shutdown()
        await app.dispose()
    assert first == second and DONE == ["k"]


@pytest.mark.parametrize(
    "backend_name",
    [pytest.param(name, marks=pytest.mark.postgres) for name in ("postgres", "postgres-psycopg")],
)
async def test_postgres_notify_wakes_other_instances(schema_db_url: str) -> None:
    """Another instance polling every 30 s picks the task up at once: LISTEN/NOTIFY woke it."""
    DONE.clear()
    managers = [TaskManager(database_url=schema_db_url, poll_interval=30.0) for _ in range(2)]
    for manager in managers:
        manager.task(name="remember")(remember)
        await manager.startup()
        manager.runtime.dispatcher.poll_min = 30.0  # type: ignore[union-attr]
    worker, producer = managers
    app = app_engine(schema_db_url)
    try:
        await asyncio.sleep(0.5)  # both pollers now wait 30 s between idle polls
        async with AsyncSession(app) as session, session.begin():
            task_id = await producer.enqueue(remember, "notified", session=session)
        for _ in range(100):  # 2 s: only a notification can explain a pick-up this fast
            record = await worker.get_task(task_id)
            if record is not None and record.status is TaskStatus.SUCCESS:
                break
            await asyncio.sleep(0.02)
        assert record is not None and record.status is TaskStatus.SUCCESS
        assert record.owner is None
    finally:
        await producer.shutdown()
        await worker.shutdown()
        await app.dispose()
    assert DONE == ["notified"]
