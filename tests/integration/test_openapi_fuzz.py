"""Schemathesis against the admin API's own OpenAPI document, on every backend.

Each operation gets requests generated from its schema (path ids, query
strings, bodies), sent to a started app.  Every response must be a
non-5xx, with a status the document lists, and a body, content type and
headers that match what it says for that status.  The example count is
small and fixed so the whole module stays within a minute or two.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import redis
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from taskflow import TaskAdmin, TaskManager
from tests.conftest import SQL_BACKENDS, require_server

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

EXAMPLES_PER_OPERATION = 60
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(
    params=[
        pytest.param(name, id=name, marks=getattr(pytest.mark, name))
        for name in (*SQL_BACKENDS, "redis")
    ]
)
def backend_name(request: pytest.FixtureRequest) -> str:
    """The SQL backends of tests/conftest.py, and Redis."""
    name: str = request.param
    return name


@pytest.fixture
def database_url(backend_name: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """As tests/conftest.py's for SQL; on Redis a key prefix of the test's own, deleted after."""
    if backend_name == "sqlite":
        yield request.getfixturevalue("db_url")
        return
    if backend_name != "redis":
        yield request.getfixturevalue("schema_db_url")
        return
    server_url = require_server("redis")
    prefix = "t" + uuid.uuid4().hex[:12]
    try:
        yield f"{server_url}?key_prefix={prefix}"
    finally:
        client = redis.Redis.from_url(server_url)
        try:
            doomed = list(client.scan_iter(match=f"{{{prefix}}}:*", count=1000))
            for start in range(0, len(doomed), 500):
                client.delete(*doomed[start : start + 500])
        finally:
            client.close()


def build_app(database_url: str) -> tuple[FastAPI, TaskManager]:
    manager = TaskManager(database_url=database_url, shutdown_grace=1.0)

    @manager.task(retries=0)
    async def flaky(n: int) -> None:
        if n % 2:
            raise RuntimeError(f"odd {n}")

    @manager.schedule(every=3600, name="hourly")
    async def hourly() -> None:
        return None

    app = FastAPI()
    TaskAdmin(app, manager)
    app.state.flaky = flaky
    return app, manager


def run_operation(client: TestClient, operation: Any, statuses: Counter[int]) -> None:
    """Send the operation's generated cases; raises with the first case that fails a check.

    ``statuses`` counts the answers' status codes.
    """

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: the failing case is shown as is
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def check(case: Case) -> None:
        kwargs = case.as_transport_kwargs(base_url=str(client.base_url))
        kwargs.pop("cookies", None)  # the admin here has no login: no cookie to send
        response = client.request(**kwargs)
        statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)
        except Exception as exc:
            sent = {k: kwargs.get(k) for k in ("url", "params", "json") if kwargs.get(k)}
            raise AssertionError(f"{case.method} {sent} -> {response.status_code}: {exc}") from exc

    check()


# Starlette 1.x's TestClient prefers the httpx2 package and warns when it finds httpx.
@pytest.mark.filterwarnings("ignore:Using .httpx. with .starlette.testclient.")
def test_the_admin_api_keeps_to_its_openapi(
    database_url: str, record_property: Callable[[str, object], None]
) -> None:
    from fastapi.testclient import TestClient

    app, manager = build_app(database_url)
    with TestClient(app, raise_server_exceptions=False) as client:

        async def seed() -> None:
            for n in range(6):
                await manager.enqueue(app.state.flaky, n)
            await manager.drain()

        client.portal.call(seed)  # type: ignore[union-attr]
        schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 14, [op.label for op in operations]
        failures: list[str] = []
        statuses: Counter[int] = Counter()
        for operation in operations:
            try:
                run_operation(client, operation, statuses)
            except Exception as exc:  # every operation runs; all failures are reported
                failures.append(f"{operation.label}: {exc}")
        record_property("requests", sum(statuses.values()))  # in --junitxml, per backend
        record_property("server_errors", sum(n for code, n in statuses.items() if code >= 500))
        record_property("statuses", dict(sorted(statuses.items())))
        assert failures == []
        # The API still answers after everything that was thrown at it.
        assert client.get("/tasks").status_code == 200
        assert client.get("/tasks/metrics").status_code == 200
        client.portal.call(manager.drain)  # type: ignore[union-attr]
