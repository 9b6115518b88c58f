"""``GET /tasks/audit``: every state change audited, newest first, with its actor.

On every SQL backend, as an HTTP client (httpx over ASGI) sees it.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request

from taskflow import TaskManager
from taskflow.web.access import Actor, is_same_origin
from taskflow.web.routes import create_router
from taskflow.web.schedule_routes import create_schedule_router
from tests.integration.admin_api.admin_app import Admin, has_status, register_jobs
from tests.polling import eventually


async def test_every_state_change_is_audited(admin: Admin) -> None:
    failed = await admin.failed_task("flaky_job", 1, {})
    await admin.failed_task("quick_job")  # for retry-failed: `failed` is retried before it
    blocker = await admin.manager.enqueue(admin.jobs["blocking_job"])
    await eventually(lambda: has_status(admin, blocker, "running"))
    await eventually(lambda: admin.manager.list_schedules())

    steps = [
        ("post", f"/tasks/{blocker}/cancel", {}),
        ("post", f"/tasks/{failed}/retry", {}),
        ("post", "/tasks/bulk-retry", {"json": {"task_ids": [failed]}}),
        ("post", "/tasks/retry-failed", {"params": {"since": "1h"}}),
        ("delete", "/tasks/history", {"params": {"value": 30, "unit": "day"}}),
        ("post", "/tasks/schedules/hourly_report/pause", {}),
        ("post", "/tasks/schedules/hourly_report/resume", {}),
    ]
    for method, url, options in steps:
        response = await admin.client.request(method.upper(), url, **options)
        assert response.status_code == 200, (url, response.text)
    await admin.manager.record_audit("login", actor="bob", detail={"ip": "10.0.0.1"})

    entries = await admin.audit()
    assert [e["action"] for e in entries] == [
        "login",
        "schedule_resume",
        "schedule_pause",
        "delete_history",
        "retry_failed",
        "bulk_retry",
        "retry",
        "cancel",
    ]
    assert {e["actor"] for e in entries[1:]} == {"anonymous"}
    assert entries[0]["actor"] == "bob" and entries[0]["detail"] == {"ip": "10.0.0.1"}
    by_action = {e["action"]: e for e in entries}
    assert by_action["cancel"]["task_id"] == blocker
    assert by_action["retry"]["task_id"] == failed
    assert by_action["retry"]["detail"]["new_task_id"]
    assert by_action["bulk_retry"]["detail"] == {
        "dispatched": 1,
        "skipped": 0,
        "task_ids": [failed],
    }
    assert by_action["retry_failed"]["detail"]["since"] == "1h"
    assert by_action["retry_failed"]["detail"]["dispatched"] >= 1
    assert by_action["delete_history"]["detail"] == {"value": 30, "unit": "day", "deleted": 0}
    assert by_action["schedule_pause"]["detail"] == {"schedule": "hourly_report"}
    stamps = [datetime.fromisoformat(e["timestamp"]) for e in entries]
    assert stamps == sorted(stamps, reverse=True)
    assert all(stamp.utcoffset() == timedelta(0) for stamp in stamps)

    stored = await admin.rows("SELECT action, actor FROM taskflow_audit ORDER BY id")
    assert [row["action"] for row in stored] == [e["action"] for e in reversed(entries)]


async def test_audit_pages_newest_first(admin: Admin) -> None:
    for n in range(7):
        await admin.manager.record_audit("note", actor=f"user{n}", detail={"n": n})

    seen: list[int] = []
    sizes: list[int] = []
    params: dict[str, Any] = {"limit": 3}
    for _ in range(10):
        response = await admin.client.get("/tasks/audit", params=params)
        assert response.status_code == 200
        page = response.json()
        seen += [entry["detail"]["n"] for entry in page]
        sizes.append(len(page))
        cursor = response.headers.get("X-Next-Cursor")
        if cursor is None:
            break
        assert 'rel="next"' in response.headers["Link"]
        params = {"limit": 3, "before": cursor}
    assert seen == [6, 5, 4, 3, 2, 1, 0]
    assert sizes == [3, 3, 1]
    for bad in ({"limit": 0}, {"limit": 501}, {"before": 0}, {"before": "x"}):
        assert (await admin.client.get("/tasks/audit", params=bad)).status_code == 422


async def test_record_audit_checks_and_keeps_its_input(admin: Admin) -> None:
    with pytest.raises(ValueError, match="32 characters"):
        await admin.manager.record_audit("x" * 33, actor="bob")
    with pytest.raises(ValueError):
        await admin.manager.record_audit("", actor="bob")
    with pytest.raises(ValueError, match="task_id"):
        await admin.manager.record_audit("retry", actor="bob", task_id="x" * 37)
    with pytest.raises(ValueError, match="limit"):
        await admin.manager.list_audit(limit=0)
    assert await admin.manager.list_audit() == []  # nothing invalid was stored
    entry = await admin.manager.record_audit(
        "logout", actor="b" * 300, detail={"at": datetime(2026, 1, 1, tzinfo=timezone.utc)}
    )
    assert entry.actor == "b" * 255
    assert entry.detail == {"at": "2026-01-01 00:00:00+00:00"}
    assert (await admin.manager.list_audit(limit=1))[0].entry_id == entry.entry_id


class NamedAccess:
    """A signed-in admin named alice; cross-site changes refused as by OpenAccess."""

    async def viewer(self, request: Request) -> Actor:
        return Actor("alice")

    async def operator(self, request: Request) -> Actor:
        if not is_same_origin(request):
            raise HTTPException(403, "Cross-site request refused")
        return Actor("alice")


async def test_the_audit_names_the_signed_in_actor(database_url: str) -> None:
    manager = TaskManager(database_url=database_url)
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    jobs = register_jobs(manager, calls, {"quick_job"}, asyncio.Event())
    app = FastAPI()
    access = NamedAccess()
    app.include_router(create_schedule_router(manager, access=access))
    app.include_router(create_router(manager, access=access))
    await manager.startup()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            failed = await manager.enqueue(jobs["quick_job"])
            await manager.drain()
            assert (await client.post(f"/tasks/{failed}/retry")).status_code == 200
            await eventually(lambda: manager.list_schedules())
            response = await client.post("/tasks/schedules/hourly_report/pause")
            assert response.status_code == 200
            entries = (await client.get("/tasks/audit")).json()
            assert [(e["action"], e["actor"]) for e in entries] == [
                ("schedule_pause", "alice"),
                ("retry", "alice"),
            ]
            await manager.drain()
    finally:
        await manager.shutdown()
