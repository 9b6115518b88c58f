"""The SSE protocol of ``GET /tasks/dashboard/stream``, read by a plain HTTP client."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser.conftest import Server

pytestmark = pytest.mark.browser


def events(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """(event, data) pairs; comments come as ("comment", text)."""
    name, data = "message", ""
    for line in lines:
        if line.startswith(":"):
            yield "comment", line[1:].strip()
        elif line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and data:
            yield name, json.loads(data)
            name, data = "message", ""


def test_snapshot_then_only_changed_rows(server: Server) -> None:
    server.run("quick", count=3)
    params = {"func_name": "slow", "limit": 5}
    with httpx.stream(
        "GET", server.url("/tasks/dashboard/stream"), params=params, timeout=15
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        assert "content-security-policy" in response.headers
        stream = events(response.iter_lines())
        name, snapshot = next(stream)
        assert name == "snapshot"
        assert set(snapshot) == {"tasks", "next_cursor", "metrics", "detail"}
        assert all(task["func_name"] == "slow" for task in snapshot["tasks"])
        assert len(snapshot["tasks"]) <= 5
        task_id = server.run("slow")
        statuses = []
        deadline = time.monotonic() + 10
        for name, data in stream:
            assert time.monotonic() < deadline, statuses
            if name != "tasks":
                continue
            # Only the new task changes: the page's other rows are never resent.
            assert [t["task_id"] for t in data["upserts"]] == [task_id]
            assert data["order"][0] == task_id and len(data["order"]) <= 5
            statuses.append(data["upserts"][0]["status"])
            if statuses[-1] == "success":
                break
        assert statuses[-1] == "success"
        assert statuses[0] in ("pending", "running")


def test_the_open_task_is_followed_with_its_logs(server: Server) -> None:
    task_id = server.run("slow")
    with httpx.stream(
        "GET", server.url("/tasks/dashboard/stream"), params={"task": task_id}, timeout=15
    ) as response:
        stream = events(response.iter_lines())
        name, snapshot = next(stream)
        assert snapshot["detail"]["task_id"] == task_id
        assert snapshot["detail"]["args"] == ["0.8"]  # display_func_args: repr'd
        finished = None
        for name, data in stream:
            if name == "detail" and data["status"] == "success":
                finished = data
                break
        assert finished is not None, "no detail event for the finished task"
        assert [line.split(" ", 1)[1] for line in finished["logs"]] == [
            "starting",
            "--- finished ---",
        ]


def test_a_bad_view_is_refused(server: Server) -> None:
    bad = httpx.get(server.url("/tasks/dashboard/stream"), params={"cursor": "x"}, timeout=10)
    assert bad.status_code == 422
    naive = httpx.get(
        server.url("/tasks/dashboard/stream"), params={"since": "2026-01-01T00:00:00"}, timeout=10
    )
    assert naive.status_code == 422
