"""``taskflow tasks list|show|cancel`` on every backend, and the one-line errors.

Tasks are seeded through the repository, the command runs in this process,
and the store is read back through the repository.
"""

from __future__ import annotations

import getpass
import json
from datetime import timedelta

import pytest

from taskflow.cli import reads
from taskflow.models import TaskStatus
from taskflow.settings import ENV_DATABASE_URL
from tests.conftest import EVERY_BACKEND
from tests.integration.cli.seeding import (
    audit_entries,
    get_task,
    log_line,
    run_cli,
    seed,
    task,
)

pytestmark = pytest.mark.parametrize("backend_name", EVERY_BACKEND, indirect=True)


@pytest.fixture(autouse=True)
def _no_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DATABASE_URL, raising=False)


def test_list_is_newest_first_and_filters(
    database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    old = task("jobs.report", TaskStatus.SUCCESS, ago=timedelta(hours=3))
    failed = task("jobs.send", TaskStatus.FAILED, ago=timedelta(minutes=20))
    done = task("jobs.send", TaskStatus.SUCCESS, ago=timedelta(minutes=10), duration=0.25)
    waiting = task("jobs.bill", TaskStatus.PENDING, ago=timedelta(minutes=1))
    seed(database_url, [old, failed, done, waiting])

    result = run_cli(capsys, "tasks", "list", "--url", database_url)
    assert result.status == 0, result.err
    assert result.lines[0].split() == [
        "ID", "FUNCTION", "STATUS", "CREATED", "(UTC)", "DURATION", "TRIES", "ERROR",
    ]  # fmt: skip
    ids = [line.split()[0] for line in result.lines[1:]]
    assert ids == [waiting.task_id, done.task_id, failed.task_id, old.task_id]
    # Aligned: every row's status starts in the header's STATUS column.
    column = result.lines[0].index("STATUS")
    assert [line[column:].split()[0] for line in result.lines[1:]] == [
        "pending", "success", "failed", "success",
    ]  # fmt: skip
    assert "250ms" in result.lines[2]
    assert "RuntimeError: jobs.send broke" in result.lines[3]

    failures = run_cli(capsys, "tasks", "list", "--status", "failed", "--url", database_url)
    assert [line.split()[0] for line in failures.lines[1:]] == [failed.task_id]

    sends = run_cli(capsys, "tasks", "list", "--func", "jobs.send", "--json", "--url", database_url)
    assert [t["task_id"] for t in json.loads(sends.out)] == [done.task_id, failed.task_id]

    recent = run_cli(capsys, "tasks", "list", "--since", "1h", "--json", "--url", database_url)
    assert {t["task_id"] for t in json.loads(recent.out)} == {
        waiting.task_id, done.task_id, failed.task_id,
    }  # fmt: skip
    since = (old.created_at - timedelta(minutes=1)).replace(tzinfo=None).isoformat()
    everything = run_cli(capsys, "tasks", "list", "--since", since, "--json", "--url", database_url)
    assert len(json.loads(everything.out)) == 4

    monkeypatch.setattr(reads, "PAGE", 1)  # keyset pages of one task each
    paged = run_cli(capsys, "tasks", "list", "--limit", "3", "--url", database_url)
    assert [line.split()[0] for line in paged.lines[1:4]] == ids[:3]
    assert "more match" in paged.out


def test_list_of_nothing(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    seed(database_url, [])
    result = run_cli(capsys, "tasks", "list", "--url", database_url)
    assert (result.status, result.out) == (0, "no tasks match\n")
    as_json = run_cli(capsys, "tasks", "list", "--json", "--url", database_url)
    assert json.loads(as_json.out) == []


def test_show_prints_fields_logs_error_and_stack_trace(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    failed = task("jobs.send", TaskStatus.FAILED, tags={"team": "ops"}, max_retries=2)
    seed(
        database_url,
        [failed],
        [log_line(failed, "connecting"), log_line(failed, "gave up", "error")],
    )

    result = run_cli(capsys, "tasks", "show", failed.task_id, "--url", database_url)
    assert result.status == 0, result.err
    assert result.lines[0].split() == ["ID", failed.task_id]
    assert result.lines[1].split() == ["Function", "jobs.send"]
    assert ["Status", "failed"] in [line.split() for line in result.lines]
    assert ["Attempts", "1/3"] in [line.split() for line in result.lines]
    assert ["Tags", "team=ops"] in [line.split() for line in result.lines]
    logs = result.out.split("Logs:\n")[1].split("\n\n")[0].splitlines()
    assert [line.split()[3:] for line in logs] == [["info", "connecting"], ["error", "gave", "up"]]
    assert "Error:\n  RuntimeError: jobs.send broke" in result.out
    assert "Stack trace:\n  Traceback (most recent call last):" in result.out

    as_json = json.loads(
        run_cli(capsys, "tasks", "show", failed.task_id, "--json", "--url", database_url).out
    )
    assert as_json["task_id"] == failed.task_id
    assert as_json["status"] == "failed"
    assert as_json["stacktrace"].startswith("Traceback")
    assert [(e["level"], e["message"]) for e in as_json["logs"]] == [
        ("info", "connecting"), ("error", "gave up"),
    ]  # fmt: skip


def test_cancel_ends_a_pending_task_and_is_audited(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    waiting = task("jobs.bill", TaskStatus.PENDING)
    done = task("jobs.bill", TaskStatus.SUCCESS)
    seed(database_url, [waiting, done])

    result = run_cli(capsys, "tasks", "cancel", waiting.task_id, "--url", database_url)
    assert result.status == 0, result.err
    assert result.out == f"cancelled {waiting.task_id} (jobs.bill, was pending)\n"
    stored = get_task(database_url, waiting.task_id)
    assert stored is not None and stored.status is TaskStatus.CANCELLED
    [entry] = audit_entries(database_url)
    assert (entry.action, entry.task_id, entry.actor) == (
        "cancel",
        waiting.task_id,
        getpass.getuser(),
    )
    assert entry.detail == {"via": "cli"}

    again = run_cli(capsys, "tasks", "cancel", done.task_id, "--url", database_url)
    assert again.status == 1
    assert again.err.count("\n") == 1
    assert again.err.startswith(f"taskflow: error: task {done.task_id} is success")
    assert len(audit_entries(database_url)) == 1


@pytest.mark.parametrize("action", ["show", "cancel", "retry"])
def test_an_unknown_id_is_one_line_and_exit_1(
    database_url: str, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    seed(database_url, [])
    result = run_cli(capsys, "tasks", action, "no-such-task", "--url", database_url)
    assert (result.status, result.out) == (1, "")
    assert result.err == "taskflow: error: no task has id 'no-such-task'\n"
    assert audit_entries(database_url) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tasks", "list", "--since", "yesterday"], "argument --since: expected a window"),
        (["tasks", "list", "--since=-1h"], "argument --since: expected a window"),
        (["tasks", "retry-failed", "--since", "6x"], "argument --since: expected a window"),
        (["report", "--since", "1.5h"], "argument --since: expected a window"),
        (["tasks", "list", "--limit", "0"], "argument --limit: must be at least 1"),
        (["tasks", "list", "--status", "done"], "argument --status: invalid choice"),
        (["report", "--by", "tag:"], "argument --by: expected func, hour or tag:KEY"),
        (["tasks", "show"], "the following arguments are required: ID"),
    ],
)
def test_bad_invocations_are_one_line_and_exit_2(
    database_url: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    result = run_cli(capsys, *args, "--url", database_url)
    assert (result.status, result.out) == (2, "")
    assert result.err.count("\n") == 1, result.err
    assert result.err.startswith("taskflow: error: taskflow ")
    assert message in result.err


def test_no_url_is_exit_2_and_the_environment_variable_is_read(
    database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(database_url, [task("jobs.send", TaskStatus.SUCCESS)])
    missing = run_cli(capsys, "tasks", "list")
    assert missing.status == 2
    assert missing.err.startswith("taskflow: error: no database URL: pass --url URL")
    monkeypatch.setenv(ENV_DATABASE_URL, database_url)
    found = run_cli(capsys, "tasks", "list", "--json")
    assert found.status == 0, found.err
    assert [t["func_name"] for t in json.loads(found.out)] == ["jobs.send"]
