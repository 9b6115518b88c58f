"""``GET /tasks/instances`` and ``/tasks/functions``: live instances and the registry.

On every SQL backend, as an HTTP client (httpx over ASGI) sees them.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import event, insert

from taskflow.db.tables import instances_table
from tests.integration.admin_api.admin_app import Admin, has_status, task_row
from tests.polling import eventually


async def test_instances_are_the_live_ones_with_running_counts(admin: Admin) -> None:
    now = datetime.now(timezone.utc)
    peer = "peer-host:4242:abcd"

    def instance(
        instance_id: str, heartbeat: datetime, stopped: datetime | None = None
    ) -> dict[str, Any]:
        return {
            "id": instance_id,
            "hostname": instance_id.split(":")[0],
            "pid": 4242,
            "started_at": now - timedelta(hours=1),
            "heartbeat_at": heartbeat,
            "stopped_at": stopped,
            "version": "9.9.9",
        }

    async with admin.raw.begin() as conn:
        await conn.execute(
            insert(instances_table),
            [
                instance(peer, now),
                instance("dead-host:1:dead", now - timedelta(hours=1)),
                instance("gone-host:2:gone", now, stopped=now),
            ],
        )
    lease = now + timedelta(hours=1)
    await admin.insert_rows(
        [
            task_row("quick_job", status="running", owner=peer, lease_expires_at=lease)
            for _ in range(2)
        ]
        + [task_row("quick_job", status="pending", owner=peer, lease_expires_at=lease)]
    )
    blocker = await admin.manager.enqueue(admin.jobs["blocking_job"])
    await eventually(lambda: has_status(admin, blocker, "running"))

    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = admin.manager.repository.engine  # type: ignore[attr-defined]
    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        response = await admin.client.get("/tasks/instances")
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert response.status_code == 200
    listed = {item["instance_id"]: item for item in response.json()}
    assert set(listed) == {admin.manager.instance_id, peer}
    assert listed[peer]["running"] == 2
    assert listed[peer]["hostname"] == "peer-host" and listed[peer]["version"] == "9.9.9"
    assert listed[peer]["pid"] == 4242
    mine = listed[admin.manager.instance_id]
    assert mine["running"] == 1
    assert datetime.fromisoformat(mine["heartbeat_at"]) <= datetime.now(timezone.utc)
    # One query for every instance and its count, not one per instance.
    assert len([s for s in statements if "taskflow_instances" in s]) == 1
    admin.gate.set()


async def test_functions_lists_the_registry(admin: Admin) -> None:
    response = await admin.client.get("/tasks/functions")
    assert response.status_code == 200
    listed = {item["name"]: item for item in response.json()}
    assert list(listed) == sorted(listed)
    assert set(listed) == {
        "billing.charge",
        "blocking_job",
        "flaky_job",
        "hourly_report",
        "quick_job",
    }
    assert listed["flaky_job"] == {
        "name": "flaky_job",
        "retries": 2,
        "delay": 0.0,
        "backoff": 1.0,
        "persist": False,
        "requeue_on_interrupt": False,
        "eager": False,
        "priority": 4,
        "executor": "async",
        "timeout": None,
        "max_delay": None,
        "jitter": None,
        "retry_on": None,
        "dont_retry_on": [],
    }
    charge = listed["billing.charge"]
    assert (charge["retries"], charge["executor"], charge["timeout"]) == (1, "thread", 30)
    assert (charge["max_delay"], charge["jitter"]) == (60.0, "equal")
    assert charge["retry_on"] == ["RuntimeError", "ConnectionError"]
    # By import path: the class is defined in admin_app, not a builtin.
    assert charge["dont_retry_on"] == ["tests.integration.admin_api.admin_app.CardExpiredError"]
