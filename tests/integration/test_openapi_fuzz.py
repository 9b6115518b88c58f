"""Schemathesis against the admin API's own OpenAPI document, on every backend.

Each operation gets requests generated from its schema (path ids, query
strings, bodies), sent to a started app.  Every response must be a
non-5xx, with a status the document lists, and a body, content type and
headers that match what it says for that status.  The example count is
small and fixed so the whole module stays within a minute or two.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
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
from tests.conftest import EVERY_BACKEND

pytestmark = pytest.mark.parametrize("backend_name", EVERY_BACKEND, indirect=True)

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
