"""Malformed input through every admin route, on SQLite, PostgreSQL, MariaDB and Redis.

NUL, lone surrogates, invalid UTF-8, huge numbers and times at the ends of
the calendar go into every query parameter, path id and body.  Nothing may
answer 5xx; the inputs named below get a 4xx that says what is wrong; every
JSON answer says ``Cache-Control: no-store``; and the list and detail routes
still answer afterwards.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from taskflow import TaskAdmin, TaskManager
from taskflow.web import stream as stream_module
from tests.conftest import EVERY_BACKEND

pytestmark = pytest.mark.parametrize("backend_name", EVERY_BACKEND, indirect=True)

EARLY = "0001-01-01T00:00:00%2B14:00"
LATE = "9999-12-31T23:59:59-14:00"
# Sent as they are (already percent-encoded where needed).
BAD_VALUES = [
    "%00",
    "a%00b",
    "%ED%A0%80",  # a UTF-8 encoded surrogate: invalid UTF-8
    "%FF%FE",
    "%C0%80",  # overlong NUL
    "%E2%80%AE",
    "9" * 40,
    "-" + "9" * 40,
    "18446744073709551616",
    "9223372036854775808",
    "1e309",
    "NaN",
    "-1",
    EARLY,
    LATE,
    "2026-01-01T00:00:00",
    "x" * 5000,
    "%27%20OR%201%3D1%20--",
]


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


BAD_CURSORS = [
    cursor_of(f"{EARLY.replace('%2B', '+')}|x"),
    cursor_of(f"{LATE}|x"),
    cursor_of("2026-01-01T00:00:00+00:00|a\x00b"),
    cursor_of("2026-01-01T00:00:00|naive"),
    "%00",
]
QUERY_ROUTES = [
    ("GET", "/tasks", ["func_name", "source", "search", "since", "until", "status", "limit"]),
    ("GET", "/tasks/dashboard/stream", ["func_name", "search", "since", "task", "status"]),
    ("GET", "/tasks/audit", ["before", "limit"]),
    ("DELETE", "/tasks/history?unit=day", ["value"]),
    ("DELETE", "/tasks/history?value=1", ["unit"]),
    ("POST", "/tasks/retry-failed", ["since", "func_name"]),
    ("GET", "/tasks/metrics", ["x"]),
    ("GET", "/tasks/instances", ["x"]),
    ("GET", "/tasks/functions", ["x"]),
    ("GET", "/tasks/schedules", ["x"]),
]
PATH_ROUTES = [
    ("GET", "/tasks/{}"),
    ("POST", "/tasks/{}/cancel"),
    ("POST", "/tasks/{}/retry"),
    ("POST", "/tasks/schedules/{}/pause"),
    ("POST", "/tasks/schedules/{}/resume"),
]
BAD_BODIES = [
    b'{"task_ids": ["a\\u0000b"]}',
    b'{"task_ids": ["\\ud800"]}',
    b'{"task_ids": ["\\udfff", "ok"]}',
    b'{"task_ids": ["\xff\xfe"]}',
    b'{"task_ids": [1e999]}',
    b'{"task_ids": [' + b"9" * 5000 + b"]}",
    b'{"task_ids": ' + b"[" * 2000 + b"]" * 2000 + b"}",
    b'{"task_ids": "\\u0000"}',
    b"\x00",
    b"",
]
# (method, url, body, words the 4xx message must hold)
NAMED_CASES = [
    ("GET", f"/tasks?since={EARLY}", None, "since must be between"),
    ("GET", f"/tasks?until={LATE}", None, "until must be between"),
    ("GET", f"/tasks/dashboard/stream?since={EARLY}", None, "since must be between"),
    ("GET", f"/tasks?cursor={BAD_CURSORS[1]}", None, "pass the next_cursor"),
    ("GET", f"/tasks/dashboard/stream?cursor={BAD_CURSORS[0]}", None, "pass the next_cursor"),
    ("GET", f"/tasks?cursor={BAD_CURSORS[2]}", None, "not produced by taskflow"),
    ("DELETE", "/tasks/history?value=1000000", None, "at most 36500 days"),
    ("DELETE", "/tasks/history?value=" + "9" * 30, None, "less than or equal"),
    ("GET", "/tasks/audit?before=18446744073709551616", None, "less than or equal"),
    ("GET", "/tasks?func_name=a%00b", None, "func_name must not contain NUL"),
    ("GET", "/tasks?search=%00", None, "search must not contain NUL"),
    ("GET", "/tasks?source=%00", None, "source must not contain NUL"),
    ("GET", "/tasks/%00", None, "task_id must not contain NUL"),
    ("POST", "/tasks/%00/cancel", None, "task_id must not contain NUL"),
    ("POST", "/tasks/%00/retry", None, "task_id must not contain NUL"),
    ("POST", "/tasks/schedules/%00/pause", None, "name must not contain NUL"),
    ("GET", "/tasks/dashboard/stream?task=%00", None, "task must not contain NUL"),
    ("POST", "/tasks/retry-failed?func_name=%00", None, "func_name must not contain NUL"),
    ("POST", "/tasks/bulk-retry", BAD_BODIES[0], "task_ids[0] must not contain NUL"),
    ("POST", "/tasks/bulk-retry", BAD_BODIES[1], "valid string"),
]


@dataclass
class Site:
    manager: TaskManager
    client: httpx.AsyncClient
    task_id: str

    async def send(self, method: str, url: str, body: bytes | None = None) -> httpx.Response:
        headers = {"content-type": "application/json"} if body is not None else {}
        return await self.client.request(method, url, content=body, headers=headers)


@pytest.fixture
async def site(database_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Site]:
    monkeypatch.setattr(stream_module, "MAX_AGE", 0.05)  # a 200 stream ends at once
    manager = TaskManager(database_url=database_url, shutdown_grace=1.0)

    @manager.task()
    async def failing() -> None:
        raise RuntimeError("expected")

    @manager.schedule(every=3600, name="hourly")
    async def hourly() -> None:
        return None

    app = FastAPI()
    TaskAdmin(app, manager)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            task_id = await manager.enqueue(failing)
            await manager.drain()
            yield Site(manager, client, task_id)
            await manager.drain()


def probes() -> list[tuple[str, str, bytes | None]]:
    """Every (method, url, body) the suite sends."""
    sent: list[tuple[str, str, bytes | None]] = []
    for method, path, names in QUERY_ROUTES:
        joiner = "&" if "?" in path else "?"
        for name in names:
            sent += [(method, f"{path}{joiner}{name}={value}", None) for value in BAD_VALUES]
    for method, template in PATH_ROUTES:
        sent += [(method, template.format(value), None) for value in BAD_VALUES]
    for path in ("/tasks", "/tasks/dashboard/stream"):
        sent += [("GET", f"{path}?cursor={cursor}", None) for cursor in BAD_CURSORS]
    sent += [("POST", "/tasks/bulk-retry", body) for body in BAD_BODIES]
    sent += [(method, url, body) for method, url, body, _ in NAMED_CASES]
    return sent


def problem(response: httpx.Response) -> str | None:
    """What is wrong with an answer to bad input; None when it is acceptable."""
    if response.status_code >= 500:
        return f"{response.status_code}: {response.text[:200]}"
    if response.headers.get("content-type", "").startswith("application/json"):
        if response.headers.get("cache-control") != "no-store":
            return f"Cache-Control {response.headers.get('cache-control')!r}"
        if response.status_code == 422:
            detail = response.json().get("detail")
            shaped = isinstance(detail, list) and all(
                {"loc", "msg", "type"} <= set(error) for error in detail
            )
            if not shaped:
                return f"422 not shaped like HTTPValidationError: {response.text[:200]}"
    return None


async def test_no_malformed_input_gets_a_server_error(
    site: Site, record_property: Callable[[str, object], None]
) -> None:
    sent = probes()
    assert len(sent) > 500
    problems = []
    statuses: Counter[int] = Counter()
    for method, url, body in sent:
        response = await site.send(method, url, body)
        statuses[response.status_code] += 1
        found = problem(response)
        if found is not None:
            problems.append(f"{method} {url[:80]} {body!r:.40}: {found}")
    record_property("probes", len(sent))  # in --junitxml: the counts per backend
    record_property("server_errors", sum(n for code, n in statuses.items() if code >= 500))
    record_property("statuses", dict(sorted(statuses.items())))
    assert problems == []
    # Every route that reads or lists still answers.
    assert (await site.client.get("/tasks")).status_code == 200
    detail = await site.client.get(f"/tasks/{site.task_id}")
    assert detail.status_code == 200 and detail.json()["status"] == "failed"
    assert (await site.client.get("/tasks/audit")).status_code == 200


@pytest.mark.parametrize(
    ("method", "url", "body", "words"),
    NAMED_CASES,
    ids=[f"{method} {url[:40]}" for method, url, _, _ in NAMED_CASES],
)
async def test_named_bad_inputs_get_a_clear_4xx(
    site: Site, method: str, url: str, body: bytes | None, words: str
) -> None:
    response = await site.send(method, url, body)
    assert 400 <= response.status_code < 500, response.text
    assert words in response.text, response.text
    assert problem(response) is None


async def test_a_lone_surrogate_in_bulk_retry_is_shown_escaped(site: Site) -> None:
    response = await site.send("POST", "/tasks/bulk-retry", BAD_BODIES[1])
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "task_ids", 0]
    assert "\\ud800" in response.json()["detail"][0]["input"]


async def test_times_at_the_ends_of_the_calendar_that_utc_holds_work(site: Site) -> None:
    edges = {"since": "0001-01-01T00:00:00Z", "until": "9999-12-31T23:59:59Z"}
    response = await site.client.get("/tasks", params=edges)
    assert response.status_code == 200, response.text
    assert [task["task_id"] for task in response.json()] == [site.task_id]
    late = {"since": "9999-12-31T23:59:59-00:00"}
    assert (await site.client.get("/tasks", params=late)).json() == []
