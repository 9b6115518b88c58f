"""The task API (``GET /tasks``, ``/tasks/{id}``, ``/tasks/metrics``) on every SQL backend."""

from __future__ import annotations

import asyncio
import base64
import json
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from taskflow import TaskAdmin, TaskManager, task_log
from taskflow.settings import resolve_database_url
from tests.polling import eventually

# The described system's task fields (its to_dict()); the list omits only the logs.
DESCRIBED_FIELDS = {
    "task_id",
    "func_name",
    "status",
    "created_at",
    "start_time",
    "end_time",
    "duration",
    "retries_used",
    "error",
    "stacktrace",
    "tags",
    "source",
    "priority",
    "executor",
}
METRIC_KEYS = {
    "total",
    "pending",
    "running",
    "success",
    "failed",
    "interrupted",
    "cancelled",
    "success_rate",
    "avg_duration_seconds",
    "by_function",
}
FUNCTION_METRIC_KEYS = {
    "func_name",
    "total",
    "success",
    "failed",
    "running",
    "success_rate",
    "avg_duration",
    "min_duration",
    "max_duration",
    "p95_duration",
}


@dataclass
class Api:
    """A started app with the task API, its manager and a raw-SQL engine."""

    manager: TaskManager
    app: FastAPI
    client: httpx.AsyncClient
    raw: AsyncEngine
    jobs: dict[str, Any]
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params)

    async def list(self, **params: Any) -> list[dict[str, Any]]:
        response = await self.get("/tasks", **params)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()
        return items

    async def ids(self, **params: Any) -> list[str]:
        return [item["task_id"] for item in await self.list(**params)]

    async def walk(self, **params: Any) -> tuple[list[str], list[int]]:
        """Every page through ``X-Next-Cursor``: all ids in order, and the page sizes."""
        ids: list[str] = []
        sizes: list[int] = []
        cursor: str | None = None
        for _ in range(1000):
            query = dict(params)
            if cursor is not None:
                query["cursor"] = cursor
            response = await self.get("/tasks", **query)
            assert response.status_code == 200, response.text
            page = [item["task_id"] for item in response.json()]
            ids += page
            sizes.append(len(page))
            cursor = response.headers.get("X-Next-Cursor")
            if cursor is None:
                return ids, sizes
        raise AssertionError("pagination never ended")

    async def raw_rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        async with self.raw.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(text(sql), params)]

    async def run(self, name: str, *args: Any) -> str:
        """Enqueue one job (committed on return) and wait until everything has finished."""
        task_id = await self.manager.enqueue(self.jobs[name], *args)
        await self.manager.drain()
        return task_id


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    manager = TaskManager(database_url=database_url, shutdown_grace=5.0)
    app = FastAPI()
    TaskAdmin(app, manager, auto_install=True)
    gate = asyncio.Event()

    @manager.task()
    async def report_job(pause: float = 0.0) -> dict[str, float]:
        await asyncio.sleep(pause)
        return {"pause": pause}

    @manager.task(retries=1)
    def failing_job(reason: str = "boom") -> None:
        task_log(f"about to fail: {reason}", level="warning", reason=reason)
        raise RuntimeError(reason)

    @manager.task()
    async def blocking_job() -> None:
        await gate.wait()

    @manager.task()
    def follower_job() -> None:
        return None

    @app.post("/blocked")
    async def blocked(background_tasks: BackgroundTasks) -> dict[str, Any]:
        return {
            "blocker": background_tasks.add_task(blocking_job),
            "follower": background_tasks.add_task(follower_job),
        }

    jobs = {
        "report_job": report_job,
        "failing_job": failing_job,
        "blocking_job": blocking_job,
        "follower_job": follower_job,
    }
    raw = create_async_engine(resolve_database_url(database_url).url, poolclass=NullPool)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                built = Api(manager, app, client, raw, jobs, gate)
                try:
                    yield built
                finally:
                    gate.set()
                    await manager.drain()
    finally:
        await raw.dispose()


def iso(moment: datetime) -> str:
    return moment.isoformat()


def nearest_rank_p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


# -- GET /tasks -----------------------------------------------------------------------


async def test_list_has_the_described_fields_newest_first(api: Api) -> None:
    created = [await api.run("report_job", 0.0) for _ in range(3)]
    created.append(await api.run("failing_job", "nope"))

    items = await api.list()
    assert [item["task_id"] for item in items] == created[::-1]
    for item in items:
        assert set(item) >= DESCRIBED_FIELDS, DESCRIBED_FIELDS - set(item)
        assert "args" not in item and "kwargs" not in item and "payload" not in item
        assert datetime.fromisoformat(item["created_at"]).utcoffset() == timedelta(0)
    newest = items[0]
    assert newest["func_name"] == "failing_job"
    assert newest["status"] == "failed"
    assert newest["error"] == "RuntimeError: nope"
    assert newest["retries_used"] == 1
    oldest = items[-1]
    assert oldest["status"] == "success"
    assert oldest["executor"] == "async"
    assert oldest["source"] == "manual"
    assert oldest["result"] == {"pause": 0.0}
    assert oldest["duration"] is not None
    created_times = [datetime.fromisoformat(item["created_at"]) for item in items]
    assert created_times == sorted(created_times, reverse=True)


async def test_pagination_walks_everything_exactly_once(api: Api) -> None:
    created = [await api.run("report_job") for _ in range(7)]
    newest_first = created[::-1]
    assert await api.ids(limit=500) == newest_first

    for limit, sizes in ((1, [1] * 7), (2, [2, 2, 2, 1]), (3, [3, 3, 1]), (7, [7]), (8, [7])):
        ids, page_sizes = await api.walk(limit=limit)
        assert ids == newest_first, limit
        assert page_sizes == sizes, limit


async def test_pagination_with_filters_and_exact_pages(api: Api) -> None:
    reports = [await api.run("report_job") for _ in range(4)]
    failures = [await api.run("failing_job") for _ in range(2)]
    reports.append(await api.run("report_job"))

    ids, sizes = await api.walk(limit=2, func_name="report_job")
    assert ids == reports[::-1]
    assert sizes == [2, 2, 1]
    ids, sizes = await api.walk(limit=2, status="failed")
    assert ids == failures[::-1]
    assert sizes == [2]  # a full last page carries no cursor


async def test_link_header_keeps_the_filters(api: Api) -> None:
    for _ in range(3):
        await api.run("report_job")
    await api.run("failing_job")

    response = await api.get("/tasks", limit=1, status="success")
    link = response.headers.get("Link")
    assert link is not None and 'rel="next"' in link
    next_url = link.split(">", 1)[0].lstrip("<")
    query = parse_qs(urlsplit(next_url).query)
    assert query.get("status") == ["success"], f"next link drops the filter: {next_url}"


async def test_filter_by_status_repeatable(api: Api) -> None:
    ok = [await api.run("report_job") for _ in range(2)]
    bad = [await api.run("failing_job")]

    assert await api.ids(status="success") == ok[::-1]
    assert await api.ids(status="failed") == bad
    both = await api.list(status=["success", "failed"])
    assert {item["task_id"] for item in both} == set(ok + bad)
    assert await api.ids(status=["pending", "running"]) == []
    assert await api.ids(status="cancelled") == []


async def test_filter_by_func_name(api: Api) -> None:
    ok = [await api.run("report_job") for _ in range(2)]
    bad = await api.run("failing_job")
    assert await api.ids(func_name="report_job") == ok[::-1]
    assert await api.ids(func_name="failing_job") == [bad]
    assert await api.ids(func_name="report") == []  # exact match, not a prefix
    assert await api.ids(func_name="no_such_function") == []


async def test_filter_by_since_and_until(api: Api) -> None:
    before = [await api.run("report_job") for _ in range(2)]
    boundary = datetime.now(timezone.utc)
    await asyncio.sleep(0.002)
    after = [await api.run("report_job") for _ in range(2)]
    end = datetime.now(timezone.utc)

    assert await api.ids(since=iso(boundary)) == after[::-1]
    assert await api.ids(until=iso(boundary)) == before[::-1]
    z_form = boundary.isoformat().replace("+00:00", "Z")
    assert await api.ids(since=z_form) == after[::-1]
    # The same instant written in another zone selects the same tasks.
    elsewhere = boundary.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert await api.ids(since=iso(elsewhere)) == after[::-1]
    assert await api.ids(until=iso(elsewhere)) == before[::-1]
    assert await api.ids(since=iso(boundary), until=iso(end)) == after[::-1]
    assert await api.ids(since=iso(end)) == []
    # Filters and pagination together.
    ids, sizes = await api.walk(since=iso(boundary), limit=1)
    assert ids == after[::-1] and sizes == [1, 1]


async def test_search_by_task_id_fragment(api: Api) -> None:
    created = [await api.run("report_job") for _ in range(3)]
    target = created[1]
    assert await api.ids(search=target[-12:]) == [target]
    assert await api.ids(search=target) == [target]
    assert await api.ids(search="zzzz-not-there") == []


async def test_search_by_func_name_fragment(api: Api) -> None:
    report = await api.run("report_job")
    failing = await api.run("failing_job")
    assert await api.ids(search="report") == [report]
    assert set(await api.ids(search="job")) == {report, failing}


async def test_search_matches_names_with_underscores(api: Api) -> None:
    report = await api.run("report_job")
    await api.run("failing_job")
    assert await api.ids(search="report_job") == [report]
    assert await api.ids(search="t_j") == [report]
    assert await api.ids(search="_") != []
    assert await api.ids(search="%") == []  # a character to find, not a wildcard


async def test_search_is_case_insensitive(api: Api) -> None:
    report = await api.run("report_job")
    assert await api.ids(search="REPORT") == [report]
    assert await api.ids(search=report.upper()[-12:]) == [report]


@pytest.mark.parametrize(
    "params",
    [
        {"status": "bogus"},
        {"status": ["success", "nope"]},
        {"limit": 0},
        {"limit": -1},
        {"limit": 1000},
        {"limit": "ten"},
        {"since": "2026-01-31T12:00:00"},
        {"until": "2026-01-31T12:00:00"},
        {"since": "yesterday"},
        {"cursor": "garbage"},
        {"cursor": "!!!!"},
        {"cursor": base64.urlsafe_b64encode(b"no separator").decode()},
        {"cursor": base64.urlsafe_b64encode(b"2026-01-31T12:00:00|abc").decode()},  # naive
        {"cursor": base64.urlsafe_b64encode(b"not-a-date|abc").decode()},
        {"search": "x" * 201},
    ],
    ids=lambda params: json.dumps(params)[:60],
)
async def test_invalid_list_parameters_are_422(api: Api, params: dict[str, Any]) -> None:
    response = await api.get("/tasks", **params)
    assert response.status_code == 422, response.text
    assert "detail" in response.json()


async def test_naive_since_message_says_what_to_do(api: Api) -> None:
    response = await api.get("/tasks", since="2026-01-31T12:00:00")
    assert response.status_code == 422
    assert "timezone" in response.text


async def test_limit_bounds_are_accepted(api: Api) -> None:
    await api.run("report_job")
    assert len(await api.list(limit=1)) == 1
    assert len(await api.list(limit=500)) == 1


# -- GET /tasks/{id} ------------------------------------------------------------------


async def test_detail_includes_logs(api: Api) -> None:
    task_id = await api.run("failing_job", "card declined")
    response = await api.get(f"/tasks/{task_id}")
    assert response.status_code == 200
    data = response.json()
    assert set(data) >= DESCRIBED_FIELDS | {"logs"}
    assert data["task_id"] == task_id
    assert data["status"] == "failed"
    assert "card declined" in data["stacktrace"]
    logs = data["logs"]
    assert len(logs) == 3 and logs[1] == "--- Retry 1 ---"
    for line in (logs[0], logs[2]):
        stamp, message = line.split(" ", 1)
        datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S")
        assert message == "about to fail: card declined"


async def test_detail_of_running_task(api: Api) -> None:
    ids = (await api.client.post("/blocked")).json()

    async def running() -> dict[str, Any] | None:
        response = await api.get(f"/tasks/{ids['blocker']}")
        if response.status_code == 404:  # the request returns before its commit
            return None
        data: dict[str, Any] = response.json()
        return data if data["status"] == "running" else None

    data = await eventually(running)
    assert data["start_time"] is not None and data["end_time"] is None
    assert data["duration"] is None
    follower = (await api.get(f"/tasks/{ids['follower']}")).json()
    assert follower["status"] == "pending"
    api.gate.set()
    await api.manager.drain()
    assert (await api.get(f"/tasks/{ids['blocker']}")).json()["status"] == "success"


@pytest.mark.parametrize(
    "task_id",
    ["01900000-0000-7000-8000-000000000000", "not-a-uuid", "x" * 300, "%20", "1'; DROP"],
)
async def test_unknown_task_is_404(api: Api, task_id: str) -> None:
    await api.run("report_job")
    response = await api.client.get(f"/tasks/{task_id}")
    assert response.status_code == 404
    assert response.json() == {"detail": "Task not found"}


# -- GET /tasks/metrics -----------------------------------------------------------------


async def test_metrics_match_what_was_run(api: Api) -> None:
    empty = (await api.get("/tasks/metrics")).json()
    assert set(empty) == METRIC_KEYS
    assert empty["total"] == 0 and empty["success_rate"] == 0.0  # as fastapi-taskflow
    assert empty["avg_duration_seconds"] is None and empty["by_function"] == []

    for pause in (0.001, 0.004, 0.002):
        await api.run("report_job", pause)
    for _ in range(2):
        await api.run("failing_job")
    ids = (await api.client.post("/blocked")).json()

    async def blocked() -> bool:
        rows = await api.raw_rows(
            "SELECT id, status FROM taskflow_tasks WHERE id IN (:a, :b)",
            a=ids["blocker"],
            b=ids["follower"],
        )
        states = {row["id"]: row["status"] for row in rows}
        return states == {ids["blocker"]: "running", ids["follower"]: "pending"}

    await eventually(blocked)
    data = (await api.get("/tasks/metrics")).json()
    assert set(data) == METRIC_KEYS
    assert {k: data[k] for k in METRIC_KEYS - {"by_function", "avg_duration_seconds"}} == {
        "total": 7,
        "pending": 1,
        "running": 1,
        "success": 3,
        "failed": 2,
        "interrupted": 0,
        "cancelled": 0,
        "success_rate": pytest.approx(3 / 5, abs=1e-6),  # terminal tasks only
    }
    await check_durations(api, data)

    api.gate.set()
    await api.manager.drain()
    data = (await api.get("/tasks/metrics")).json()
    assert (data["total"], data["pending"], data["running"]) == (7, 0, 0)
    assert (data["success"], data["failed"]) == (5, 2)
    assert data["success_rate"] == pytest.approx(5 / 7, abs=1e-6)
    await check_durations(api, data)
    by_name = {row["func_name"]: row for row in data["by_function"]}
    assert set(by_name) == {"report_job", "failing_job", "blocking_job", "follower_job"}
    report = by_name["report_job"]
    assert (report["total"], report["success"], report["failed"]) == (3, 3, 0)
    assert report["success_rate"] == 1.0
    assert report["min_duration"] >= 0.001
    assert report["max_duration"] >= 0.004
    assert report["min_duration"] <= report["avg_duration"] <= report["max_duration"]
    failing = by_name["failing_job"]
    assert (failing["total"], failing["success"], failing["failed"]) == (2, 0, 2)
    assert failing["success_rate"] == 0.0


async def check_durations(api: Api, data: dict[str, Any]) -> None:
    """avg and per-function statistics equal what plain SQL over the rows says."""
    rows = await api.raw_rows(
        "SELECT func_name, duration_ms FROM taskflow_tasks"
        " WHERE status IN ('success', 'failed') AND duration_ms IS NOT NULL"
    )
    durations = [float(row["duration_ms"]) / 1000 for row in rows]
    assert data["avg_duration_seconds"] == pytest.approx(sum(durations) / len(durations), abs=2e-6)
    by_name = {row["func_name"]: row for row in data["by_function"]}
    for name in {row["func_name"] for row in rows}:
        mine = [float(row["duration_ms"]) / 1000 for row in rows if row["func_name"] == name]
        stats = by_name[name]
        assert set(stats) == FUNCTION_METRIC_KEYS
        assert stats["min_duration"] == pytest.approx(min(mine))
        assert stats["max_duration"] == pytest.approx(max(mine))
        assert stats["avg_duration"] == pytest.approx(sum(mine) / len(mine))
        assert stats["p95_duration"] == pytest.approx(nearest_rank_p95(mine))


# -- OpenAPI ------------------------------------------------------------------------------


async def test_openapi_documents_the_routes_with_response_models(api: Api) -> None:
    schema = (await api.get("/openapi.json")).json()
    paths = schema["paths"]
    components = schema["components"]["schemas"]

    def ok_schema(path: str) -> dict[str, Any]:
        operation = paths[path]["get"]
        result: dict[str, Any] = operation["responses"]["200"]["content"]["application/json"][
            "schema"
        ]
        return result

    listing = ok_schema("/tasks")
    assert listing["type"] == "array"
    assert listing["items"]["$ref"].endswith("/TaskOut")
    assert ok_schema("/tasks/metrics")["$ref"].endswith("/MetricsOut")
    assert ok_schema("/tasks/{task_id}")["$ref"].endswith("/TaskDetailOut")
    assert "404" in paths["/tasks/{task_id}"]["get"]["responses"]

    assert set(components["TaskOut"]["properties"]) >= DESCRIBED_FIELDS
    assert set(components["TaskDetailOut"]["properties"]) >= DESCRIBED_FIELDS | {"logs"}
    assert set(components["MetricsOut"]["properties"]) >= METRIC_KEYS
    parameters = {p["name"] for p in paths["/tasks"]["get"]["parameters"]}
    assert {"status", "func_name", "since", "until", "search", "limit", "cursor"} <= parameters


# Starlette 1.x's TestClient prefers the httpx2 package and warns when it finds httpx.
@pytest.mark.filterwarnings("ignore:Using .httpx. with .starlette.testclient.")
def test_test_client_without_the_lifespan_gets_a_message_that_says_what_to_do() -> None:
    from fastapi.testclient import TestClient

    from taskflow.exceptions import NotStartedError

    manager = TaskManager(database_url="sqlite://")
    app = FastAPI()
    TaskAdmin(app, manager, auto_install=True)

    @manager.task()
    def send(address: str) -> None:
        return None

    @app.post("/signup")
    def signup(email: str, background_tasks: BackgroundTasks) -> dict[str, str]:
        return {"task_id": background_tasks.add_task(send, address=email)}  # type: ignore[func-returns-value]

    with pytest.raises(NotStartedError, match=r"with TestClient\(app\) as client"):
        TestClient(app).post("/signup", params={"email": "a@example.com"})
    with TestClient(app) as client:
        response = client.post("/signup", params={"email": "a@example.com"})
        assert response.status_code == 200 and len(response.json()["task_id"]) == 36
