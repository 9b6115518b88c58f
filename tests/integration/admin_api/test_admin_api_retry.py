"""``POST /tasks/{task_id}/retry`` and ``POST /tasks/bulk-retry``.

On every SQL backend, as an HTTP client (httpx over ASGI) sees them.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from taskflow import TaskAdmin, TaskManager
from taskflow import replay as replay_module
from taskflow.ids import new_task_id
from taskflow.settings import resolve_database_url
from tests.integration.admin_api.admin_app import Admin, has_status, register_jobs, task_row
from tests.polling import eventually

# -- POST /tasks/{task_id}/retry ---------------------------------------------------------


async def test_retry_runs_the_task_again_with_the_same_arguments(admin: Admin) -> None:
    original = await admin.failed_task(
        "flaky_job", 7, {"name": "Ada", "tier": [1, 2]}, note="rush", tags={"team": "ops"}
    )
    first_calls = len(admin.calls)
    assert first_calls == 3  # retries=2: three attempts, all failed

    response = await admin.client.post(f"/tasks/{original}/retry")
    assert response.status_code == 200, response.text
    body = response.json()
    new_id = body["task_id"]
    assert new_id != original
    assert body["task"]["task_id"] == new_id
    assert body["task"]["retried_from"] == original
    assert body["task"]["source"] == "retry"
    assert body["task"]["func_name"] == "flaky_job"

    assert await admin.finished(new_id) == "success"
    assert admin.calls[first_calls:] == [
        ("flaky_job", (7, {"name": "Ada", "tier": [1, 2]}), {"note": "rush"})
    ]
    old_row, new_row = [
        (await admin.rows("SELECT * FROM taskflow_tasks WHERE id = :i", i=task_id))[0]
        for task_id in (original, new_id)
    ]
    for column in ("func_name", "priority", "executor", "payload_format", "payload"):
        assert new_row[column] == old_row[column], column
    assert new_row["priority"] == 4
    assert (new_row["source"], new_row["retried_from"]) == ("retry", original)
    assert new_row["attempt"] == 0 and new_row["max_retries"] == 2
    assert (await admin.client.get(f"/tasks/{new_id}")).json()["tags"] == {"team": "ops"}
    assert (await admin.client.get(f"/tasks/{original}")).json()["status"] == "failed"


async def test_retry_of_a_name_registered_function(admin: Admin) -> None:
    """The described system stored ``name=`` in one place and looked it up in another."""
    original = await admin.failed_task("billing.charge", 1250)
    stored = await admin.rows("SELECT func_name FROM taskflow_tasks WHERE id = :i", i=original)
    assert stored[0]["func_name"] == "billing.charge"

    response = await admin.client.post(f"/tasks/{original}/retry")
    assert response.status_code == 200, response.text
    new_id = response.json()["task_id"]
    assert await admin.finished(new_id) == "success"
    assert admin.calls[-1] == ("billing.charge", (1250,), {})
    detail = (await admin.client.get(f"/tasks/{new_id}")).json()
    assert (detail["func_name"], detail["executor"]) == ("billing.charge", "thread")


async def test_retry_of_an_interrupted_task(admin: Admin) -> None:
    row = task_row("flaky_job", status="interrupted", args=[3, {"name": "Bo"}])
    await admin.insert_rows([row])

    response = await admin.client.post(f"/tasks/{row['id']}/retry")
    assert response.status_code == 200, response.text
    assert await admin.finished(response.json()["task_id"]) == "success"
    assert admin.calls[-1] == ("flaky_job", (3, {"name": "Bo"}), {"note": ""})


async def test_retry_refusals(admin: Admin) -> None:
    missing = await admin.client.post(f"/tasks/{new_task_id()}/retry")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Task not found"}

    done = await admin.manager.enqueue(admin.jobs["quick_job"])
    assert await admin.finished(done) == "success"
    finished = await admin.client.post(f"/tasks/{done}/retry")
    assert finished.status_code == 400
    assert "only failed or interrupted" in finished.json()["detail"]

    running = await admin.manager.enqueue(admin.jobs["blocking_job"])
    await eventually(lambda: has_status(admin, running, "running"))
    assert (await admin.client.post(f"/tasks/{running}/retry")).status_code == 400

    orphan = task_row("app.jobs:removed_job")
    await admin.insert_rows([orphan])
    gone = await admin.client.post(f"/tasks/{orphan['id']}/retry")
    assert gone.status_code == 409
    assert "app.jobs:removed_job" in gone.json()["detail"]
    assert "@task_manager.task" in gone.json()["detail"]  # says what to do

    retries = await admin.rows("SELECT id FROM taskflow_tasks WHERE source = 'retry'")
    assert retries == []  # no refusal created anything
    actions = [entry["action"] for entry in await admin.audit()]
    assert "retry" not in actions


async def test_retry_keeps_encrypted_arguments_encrypted(
    database_url: str, backend_name: str
) -> None:
    from cryptography.fernet import Fernet

    manager = TaskManager(database_url=database_url, encrypt_args_key=Fernet.generate_key())
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    failing = {"flaky_job"}
    jobs = register_jobs(manager, calls, failing, asyncio.Event())
    app = FastAPI()
    TaskAdmin(app, manager)
    secret = {"card": "4111-1111-1111-1111", "when": datetime(2026, 1, 31, tzinfo=timezone.utc)}
    raw = create_async_engine(resolve_database_url(database_url).url, poolclass=NullPool)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                admin = Admin(manager, client, raw, jobs, calls, failing)
                original = await manager.enqueue(jobs["flaky_job"], 9, secret, note="vip")
                assert await admin.finished(original) == "failed"
                failing.clear()

                response = await client.post(f"/tasks/{original}/retry")
                assert response.status_code == 200, response.text
                new_id = response.json()["task_id"]
                assert await admin.finished(new_id) == "success"
                assert calls[-1] == ("flaky_job", (9, secret), {"note": "vip"})

                rows = {
                    row["id"]: row
                    for row in await admin.rows(
                        "SELECT id, args, kwargs, payload, payload_format FROM taskflow_tasks"
                    )
                }
                assert rows[new_id]["payload_format"] == "fernet"
                assert rows[new_id]["args"] is None and rows[new_id]["kwargs"] is None
                # The very same ciphertext: copied, never decrypted and re-encrypted.
                assert bytes(rows[new_id]["payload"]) == bytes(rows[original]["payload"])
                assert b"4111" not in bytes(rows[new_id]["payload"])
                await manager.drain()
    finally:
        await raw.dispose()


async def test_encrypted_task_without_a_key_is_409(admin: Admin) -> None:
    row = task_row("flaky_job", args=None, payload=b"gAAAA-not-for-us", payload_format="fernet")
    row["args"] = row["kwargs"] = None
    await admin.insert_rows([row])
    response = await admin.client.post(f"/tasks/{row['id']}/retry")
    assert response.status_code == 409
    assert "encrypt_args_key" in response.json()["detail"]
    bulk = await admin.client.post("/tasks/bulk-retry", json={"task_ids": [row["id"]]})
    assert bulk.json()["dispatched"] == 0 and bulk.json()["skipped"] == 1


# -- POST /tasks/bulk-retry -----------------------------------------------------------------


async def test_bulk_retry_dispatches_the_retryable_and_skips_the_rest(admin: Admin) -> None:
    first = await admin.failed_task("flaky_job", 1, {})
    second = await admin.failed_task("billing.charge", 2)
    done = await admin.manager.enqueue(admin.jobs["quick_job"])
    assert await admin.finished(done) == "success"
    orphan = task_row("app.jobs:removed_job")
    await admin.insert_rows([orphan])
    requested = [first, second, done, new_task_id(), orphan["id"], first]

    response = await admin.client.post("/tasks/bulk-retry", json={"task_ids": requested})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["dispatched"], body["skipped"]) == (2, 4)
    assert body["skipped_by_reason"] == {
        "not_found": 1,
        "duplicate": 1,
        "not_retryable": 1,
        "already_retried": 0,
        "function_unavailable": 1,
        "no_key": 0,
    }
    assert body["truncated"] is False
    pairs = {item["original_task_id"]: item["new_task_id"] for item in body["results"]}
    assert set(pairs) == {first, second}
    for original, new_id in pairs.items():
        assert await admin.finished(new_id) == "success"
        row = await admin.rows("SELECT retried_from FROM taskflow_tasks WHERE id = :i", i=new_id)
        assert row[0]["retried_from"] == original
    retries = await admin.rows("SELECT id FROM taskflow_tasks WHERE source = 'retry'")
    assert len(retries) == 2  # the repeated id was retried once


@pytest.mark.parametrize(
    "body",
    [None, {}, {"task_ids": "abc"}, {"task_ids": [1, 2]}, {"ids": ["a"]}, [1, 2]],
    ids=["no-body", "empty", "string", "ints", "wrong-key", "list"],
)
async def test_bulk_retry_bad_body_is_422(admin: Admin, body: Any) -> None:
    response = await admin.client.post("/tasks/bulk-retry", json=body)
    assert response.status_code == 422, response.text


async def test_bulk_retry_caps_the_list(admin: Admin) -> None:
    ids = [new_task_id() for _ in range(replay_module.MAX_BULK + 1)]
    response = await admin.client.post("/tasks/bulk-retry", json={"task_ids": ids})
    assert response.status_code == 422
    assert "1000" in response.text
    allowed = await admin.client.post("/tasks/bulk-retry", json={"task_ids": ids[:-1]})
    assert allowed.status_code == 200
    assert allowed.json()["skipped"] == replay_module.MAX_BULK
