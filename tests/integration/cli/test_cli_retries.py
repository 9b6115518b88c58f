"""``taskflow tasks retry`` and ``retry-failed`` on every backend: new pending rows, audited.

A retry made here is a pending row that no instance owns; the test with a
running app (``test_cli_with_app.py``) shows an instance claiming and
running it.
"""

from __future__ import annotations

import getpass
import json
from datetime import timedelta

import pytest

from taskflow.models import TaskStatus
from taskflow.repository.base import TaskQuery, TaskRepository
from taskflow.settings import ENV_DATABASE_URL
from tests.conftest import EVERY_BACKEND
from tests.integration.cli.seeding import (
    audit_entries,
    get_task,
    run_cli,
    seed,
    task,
    with_repository,
)

pytestmark = pytest.mark.parametrize("backend_name", EVERY_BACKEND, indirect=True)


@pytest.fixture(autouse=True)
def _no_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DATABASE_URL, raising=False)


def retries_of(url: str) -> dict[str, str]:
    """Each retry task's original: {original id: retry id}."""

    async def read(repository: TaskRepository) -> dict[str, str]:
        page = await repository.list_tasks(TaskQuery(limit=500))
        return {r.retried_from: r.task_id for r in page.items if r.retried_from}

    return with_repository(url, read)


def test_retry_inserts_an_unowned_pending_copy(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    failed = task("jobs.send", TaskStatus.FAILED, max_retries=2, priority=3, tags={"team": "ops"})
    seed(database_url, [failed])

    result = run_cli(capsys, "tasks", "retry", failed.task_id, "--json", "--url", database_url)
    assert result.status == 0, result.err
    body = json.loads(result.out)
    new_id = body["new_task_id"]
    assert body["task_id"] == failed.task_id and body["task"]["task_id"] == new_id

    copy = get_task(database_url, new_id)
    assert copy is not None
    assert (copy.status, copy.owner, copy.source) == (TaskStatus.PENDING, None, "retry")
    assert (copy.retried_from, copy.func_name) == (failed.task_id, "jobs.send")
    assert (copy.max_retries, copy.priority, copy.tags) == (2, 3, {"team": "ops"})
    original = get_task(database_url, failed.task_id)
    assert original is not None and original.status is TaskStatus.FAILED

    [entry] = audit_entries(database_url)
    assert (entry.action, entry.task_id, entry.actor) == (
        "retry",
        failed.task_id,
        getpass.getuser(),
    )
    assert entry.detail == {"new_task_id": new_id, "via": "cli"}

    text = run_cli(capsys, "tasks", "retry", failed.task_id, "--url", database_url)
    assert text.status == 0, text.err
    assert text.out.startswith(f"retried {failed.task_id} as ")
    assert "a running app instance will pick it up" in text.out


def test_retry_refuses_a_task_that_did_not_fail(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    done = task("jobs.send", TaskStatus.SUCCESS)
    seed(database_url, [done])
    result = run_cli(capsys, "tasks", "retry", done.task_id, "--url", database_url)
    assert (result.status, result.out) == (1, "")
    assert result.err == (
        f"taskflow: error: task {done.task_id} is success: only failed or interrupted tasks "
        "can be retried\n"
    )
    assert retries_of(database_url) == {}
    assert audit_entries(database_url) == []


def test_retry_failed_retries_each_failure_of_the_window_once(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    recent = [
        task("jobs.send", TaskStatus.FAILED, ago=timedelta(minutes=10), max_retries=1),
        task("jobs.send", TaskStatus.FAILED, ago=timedelta(minutes=20), max_retries=1),
        task("jobs.bill", TaskStatus.INTERRUPTED, ago=timedelta(minutes=30), max_retries=4),
    ]
    old = task("jobs.send", TaskStatus.FAILED, ago=timedelta(hours=3))
    fine = task("jobs.send", TaskStatus.SUCCESS, ago=timedelta(minutes=5))
    seed(database_url, [*recent, old, fine])

    result = run_cli(
        capsys, "tasks", "retry-failed", "--since", "1h", "--yes", "--json", "--url", database_url
    )
    assert result.status == 0, result.err
    report = json.loads(result.out)
    assert (report["dispatched"], report["skipped"], report["capped"]) == (3, 0, False)
    copies = retries_of(database_url)
    assert set(copies) == {r.task_id for r in recent}
    bill = get_task(database_url, copies[recent[2].task_id])
    assert bill is not None and (bill.max_retries, bill.owner) == (4, None)

    [entry] = audit_entries(database_url)
    assert (entry.action, entry.actor, entry.task_id) == ("retry_failed", getpass.getuser(), None)
    assert entry.detail["dispatched"] == 3 and entry.detail["via"] == "cli"

    again = run_cli(
        capsys, "tasks", "retry-failed", "--since", "1h", "--yes", "--url", database_url
    )
    assert again.status == 0, again.err
    assert again.out == "retried 0 task(s), skipped 3 (already_retried: 3)\n"

    only = run_cli(
        capsys, "tasks", "retry-failed", "--since", "6h", "--func", "jobs.bill", "--yes",
        "--url", database_url,
    )  # fmt: skip
    assert only.out == "retried 0 task(s), skipped 1 (already_retried: 1)\n"
    wide = run_cli(capsys, "tasks", "retry-failed", "--since", "6h", "--yes", "--url", database_url)
    assert wide.out.startswith("retried 1 task(s)")  # the old failure, outside the first window
    assert old.task_id in retries_of(database_url)


def test_retry_failed_asks_first_and_refuses_without_a_terminal(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(database_url, [task("jobs.send", TaskStatus.FAILED)])
    result = run_cli(capsys, "tasks", "retry-failed", "--url", database_url)
    assert (result.status, result.out) == (2, "")
    assert result.err.startswith("taskflow: error: found 1 failed or interrupted task(s) created")
    assert result.err.endswith(" UTC: pass --yes to retry them without asking\n")
    assert retries_of(database_url) == {}
    assert audit_entries(database_url) == []


def test_retry_failed_with_nothing_to_do(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(database_url, [task("jobs.send", TaskStatus.SUCCESS)])
    result = run_cli(capsys, "tasks", "retry-failed", "--url", database_url)
    assert (result.status, result.out) == (0, "no failed or interrupted tasks match\n")
