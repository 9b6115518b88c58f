"""Tests of the quick start (``basic_app.py``) with ``taskflow.testing``.

Run them with ``pytest examples/test_basic_app.py``.  In your own project,
put ``pytest_plugins`` and the ``task_manager`` fixture in the root
``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from examples import basic_app
from examples.basic_app import app, send_email
from taskflow import TaskManager, TaskStatus
from taskflow.testing import CapturedTasks

# The fixtures taskflow_inline and taskflow_captured, over our task_manager fixture.
pytest_plugins = ["taskflow.pytest_plugin"]


@pytest.fixture
def task_manager() -> TaskManager:
    return basic_app.task_manager


@pytest.fixture
def client() -> Iterator[TestClient]:
    # `with` runs the app's lifespan, which starts taskflow.
    with TestClient(app) as client:
        yield client


def test_signup_sends_the_email(client: TestClient, taskflow_inline: TaskManager) -> None:
    task_manager = taskflow_inline
    response = client.post("/signup", params={"email": "ada@example.com"})

    # Inline mode: the request returned once its task was over.
    task = task_manager.store.get(response.json()["task_id"])
    assert task is not None
    assert task.status is TaskStatus.SUCCESS
    assert task.logs[-1].endswith("Sending email to ada@example.com")


def test_signup_enqueues_one_email(
    client: TestClient, task_manager: TaskManager, taskflow_captured: CapturedTasks
) -> None:
    response = client.post("/signup", params={"email": "ada@example.com"})

    # Captured: recorded with its id and arguments, not run, not stored.
    [call] = taskflow_captured.calls
    assert call.func is send_email
    assert call.kwargs == {"address": "ada@example.com"}
    assert call.task_id == response.json()["task_id"]
    assert task_manager.store.get(call.task_id) is None


def test_the_webhook_task_runs_to_success(client: TestClient, task_manager: TaskManager) -> None:
    # Without either mode the task runs after the response, as in production;
    # wait_sync() waits for its end.
    response = client.post("/webhook", json={"event": "paid"})
    task = task_manager.wait_sync(response.json()["task_id"], timeout=10)
    assert task.status is TaskStatus.SUCCESS
    assert task.func_name == "process_webhook"
    assert task.result is None
