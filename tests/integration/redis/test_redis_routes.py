"""Routes on Redis: every injection pattern, ``init_app``/``RedisBackend``, retries, config.

What needs SQL (``enqueue(session=...)``) says so.  The Redis repository alone
is covered by ``tests/conformance/``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

import pytest
from fastapi import FastAPI

from taskflow import (
    RedisBackend,
    TaskAdmin,
    TaskArgumentError,
    TaskQuery,
    TaskStatus,
)
from taskflow.repository.redis import RedisTaskRepository
from tests.integration.redis.redis_app import (
    CALLS,
    FAIL_TIMES,
    ROUTES,
    TERMINAL,
    Deployment,
    add_task_routes,
    always_fails,
    flaky,
    remember,
    serving,
)
from tests.polling import wait_for_status

# -- routes on Redis -----------------------------------------------------------------


async def test_routes_add_tasks_with_every_injection_pattern(deployment: Deployment) -> None:
    manager = deployment.manager()
    app = FastAPI()
    TaskAdmin(app, manager, auto_install=True)
    add_task_routes(app, manager)
    ids: dict[str, str] = {}
    async with serving(app) as client:
        for route in ROUTES:
            response = await client.post(f"/{route}/{route}")
            assert response.status_code == 200, (route, response.text)
            ids[route] = response.json()["task_id"]
            assert isinstance(ids[route], str) and len(ids[route]) == 36, ids[route]
        await manager.drain()
        for route, (func_name, executor, ran) in ROUTES.items():
            response = await client.get(f"/tasks/{ids[route]}")
            assert response.status_code == 200, response.text
            data = response.json()
            assert data["status"] == "success", (route, data)
            assert (data["func_name"], data["executor"]) == (func_name, executor), route
            assert data["result"] == {"tag": route, "ran": ran}, route
            assert data["error"] is None and data["retries_used"] == 0
            assert data["start_time"] is not None and data["end_time"] is not None
    assert sorted(CALLS) == sorted(ROUTES)
    assert len(set(ids.values())) == len(ROUTES)


async def test_init_app_and_redis_backend_without_the_admin(deployment: Deployment) -> None:
    """``snapshot_backend=RedisBackend(url, prefix=...)``, ``init_app()`` and ``install()``."""
    manager = deployment.manager(
        snapshot_backend=RedisBackend(deployment.server_url, prefix=deployment.prefix)
    )
    assert isinstance(manager.repository, RedisTaskRepository)
    assert manager.repository.keys.prefix == deployment.prefix
    app = FastAPI()
    manager.init_app(app)
    manager.install(app)
    add_task_routes(app, manager)
    async with serving(app) as client:
        assert manager.started and manager.readiness().ready
        ids = {
            route: (await client.post(f"/{route}/{route}")).json()["task_id"] for route in ROUTES
        }
        await manager.drain()
        records = {route: await manager.get_task(task_id) for route, task_id in ids.items()}
    assert not manager.started  # the app's lifespan stopped it
    for route, record in records.items():
        assert record is not None and record.status is TaskStatus.SUCCESS, (route, record)
        assert record.result == {"tag": route, "ran": ROUTES[route][2]}
    assert any(b":task:" in key for key in deployment.stored_keys())  # written under the prefix


# -- retries -------------------------------------------------------------------------


async def test_retries_until_success_and_until_failure(deployment: Deployment) -> None:
    manager = await deployment.started()
    FAIL_TIMES["twice"] = 2
    began = time.monotonic()
    recovered = await manager.enqueue(flaky, "twice")
    hopeless = await manager.enqueue(always_fails, "never")
    done = await wait_for_status(manager, recovered, TERMINAL)
    failed = await wait_for_status(manager, hopeless, TERMINAL)
    assert time.monotonic() - began >= 0.1  # two waits of delay=0.05
    assert done.status is TaskStatus.SUCCESS, done
    assert done.retries_used == 2 and done.result == "ok twice"
    assert failed.status is TaskStatus.FAILED, failed
    assert failed.retries_used == 1
    assert failed.error is not None and "never never works" in failed.error
    assert failed.stacktrace is not None and "always_fails" in failed.stacktrace
    assert "ValueError" in failed.stacktrace
    assert Counter(CALLS) == {"twice": 3, "never": 2}


async def test_success_after_retries_clears_the_last_error(deployment: Deployment) -> None:
    manager = await deployment.started()
    FAIL_TIMES["once"] = 1
    task_id = await manager.enqueue(flaky, "once")
    record = await wait_for_status(manager, task_id, TERMINAL)
    assert record.status is TaskStatus.SUCCESS and record.retries_used == 1
    assert (record.error, record.stacktrace) == (None, None)


# -- what needs SQL --------------------------------------------------------------------


async def test_enqueue_with_a_session_needs_a_sql_database(deployment: Deployment) -> None:
    manager = await deployment.started()
    with pytest.raises(TaskArgumentError, match="SQL database"):
        await manager.enqueue(remember, "in-tx", session=object())
    with pytest.raises(TaskArgumentError, match="SQL database"):
        await asyncio.to_thread(manager.add_to_session, object(), remember, "in-tx")
    assert (await manager.list_tasks(TaskQuery(limit=10))).items == []
    assert CALLS == []


# -- configuration ----------------------------------------------------------------------


async def test_a_default_redis_manager_writes_its_format_version_without_warning(
    deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="taskflow"):
        await deployment.started()
    assert not [r for r in caplog.records if "format version" in r.getMessage()]
    assert f"{{{deployment.prefix}}}:format".encode() in deployment.stored_keys()
