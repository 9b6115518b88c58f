"""The admin API's routes: fixed paths before task ids, OpenAPI, cross-site refusals."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from taskflow.db.tables import audit_table
from tests.integration.admin_api.admin_app import Admin
from tests.polling import eventually


async def test_fixed_paths_are_not_taken_for_task_ids(admin: Admin) -> None:
    for path in ("/tasks/audit", "/tasks/instances", "/tasks/functions"):
        response = await admin.client.get(path)
        assert response.status_code == 200, path
        assert isinstance(response.json(), list)
    for path in ("/tasks/bulk-retry", "/tasks/retry-failed"):
        assert (await admin.client.get(path)).status_code in (404, 405)


async def test_openapi_documents_the_admin_routes(admin: Admin) -> None:
    schema = (await admin.client.get("/openapi.json")).json()
    paths = schema["paths"]
    components = schema["components"]["schemas"]

    def ok(path: str, method: str) -> dict[str, Any]:
        result: dict[str, Any] = paths[path][method]["responses"]["200"]["content"][
            "application/json"
        ]["schema"]
        return result

    assert ok("/tasks/{task_id}/retry", "post")["$ref"].endswith("/RetryOut")
    assert {"404", "400", "409"} <= set(paths["/tasks/{task_id}/retry"]["post"]["responses"])
    assert ok("/tasks/bulk-retry", "post")["$ref"].endswith("/RetryReportOut")
    body = paths["/tasks/bulk-retry"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"].endswith("/BulkRetryIn")
    assert ok("/tasks/retry-failed", "post")["$ref"].endswith("/RetryReportOut")
    parameters = {p["name"] for p in paths["/tasks/retry-failed"]["post"]["parameters"]}
    assert {"since", "func_name"} <= parameters
    for path, model in (
        ("/tasks/audit", "AuditOut"),
        ("/tasks/instances", "InstanceOut"),
        ("/tasks/functions", "FunctionOut"),
    ):
        listing = ok(path, "get")
        assert listing["type"] == "array" and listing["items"]["$ref"].endswith(f"/{model}")
    assert set(components["RetryReportOut"]["properties"]) >= {
        "dispatched",
        "skipped",
        "results",
        "truncated",
        "capped",
    }
    assert set(components["AuditOut"]["properties"]) >= {
        "entry_id",
        "action",
        "task_id",
        "actor",
        "timestamp",
        "detail",
    }
    assert "running" in components["InstanceOut"]["properties"]
    for path in ("/tasks/{task_id}/retry", "/tasks/bulk-retry", "/tasks/retry-failed"):
        assert paths[path]["post"]["tags"] == ["tasks"]


@pytest.mark.parametrize(
    "headers",
    [{"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}],
    ids=["sec-fetch-site", "origin"],
)
async def test_cross_site_changes_are_refused(admin: Admin, headers: dict[str, str]) -> None:
    failed = await admin.failed_task("flaky_job", 1, {})
    await eventually(lambda: admin.manager.list_schedules())
    attempts = [
        ("POST", f"/tasks/{failed}/retry", {}),
        ("POST", "/tasks/bulk-retry", {"json": {"task_ids": [failed]}}),
        ("POST", "/tasks/retry-failed", {"params": {"since": "all"}}),
        ("POST", f"/tasks/{failed}/cancel", {}),
        ("DELETE", "/tasks/history", {"params": {"value": 1, "unit": "min"}}),
        ("POST", "/tasks/schedules/hourly_report/pause", {}),
    ]
    for method, url, options in attempts:
        response = await admin.client.request(method, url, headers=headers, **options)
        assert response.status_code == 403, (url, response.status_code)
    assert await admin.rows("SELECT id FROM taskflow_tasks WHERE source = 'retry'") == []
    async with admin.raw.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(audit_table)) == 0
    assert await admin.status(failed) == "failed"
    schedules = await admin.manager.list_schedules()
    assert not schedules[0].paused

    same_site = {"Sec-Fetch-Site": "same-origin", "Origin": "http://test"}
    response = await admin.client.post(f"/tasks/{failed}/retry", headers=same_site)
    assert response.status_code == 200
    assert await admin.finished(response.json()["task_id"]) == "success"
