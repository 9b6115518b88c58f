"""``taskflow report`` on every backend: the numbers of a window, as a table, JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest

from taskflow.cli import report
from taskflow.models import TaskStatus
from taskflow.settings import ENV_DATABASE_URL
from tests.conftest import EVERY_BACKEND
from tests.integration.cli.seeding import run_cli, seed, task

pytestmark = pytest.mark.parametrize("backend_name", EVERY_BACKEND, indirect=True)
MIN = timedelta(minutes=1)


@pytest.fixture(autouse=True)
def _no_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DATABASE_URL, raising=False)


@pytest.fixture
def seeded(database_url: str) -> str:
    """jobs.send: 4 successes (1s, 2s, 3s, 4s) and a failure (10s); jobs.bill: one of each
    and one pending; one task outside a 1h window."""
    records = [
        *(task("jobs.send", TaskStatus.SUCCESS, ago=10 * MIN, duration=d, tags={"team": "a"})
          for d in (1.0, 2.0, 3.0, 4.0)),
        task("jobs.send", TaskStatus.FAILED, ago=20 * MIN, duration=10.0, tags={"team": "b"}),
        task("jobs.bill", TaskStatus.SUCCESS, ago=30 * MIN, duration=0.5),
        task("jobs.bill", TaskStatus.INTERRUPTED, ago=30 * MIN, duration=None),
        task("jobs.bill", TaskStatus.PENDING, ago=MIN),
        task("jobs.old", TaskStatus.FAILED, ago=timedelta(hours=5)),
    ]  # fmt: skip
    seed(database_url, records)
    return database_url


def test_report_by_function_as_json(seeded: str, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "report", "--since", "1h", "--json", "--url", seeded)
    assert result.status == 0, result.err
    data = json.loads(result.out)
    assert (data["by"], data["tasks_read"], data["complete"]) == ("func", 8, True)
    groups = {g["group"]: g for g in data["groups"]}
    assert list(groups) == ["jobs.bill", "jobs.send"]
    send = groups["jobs.send"]
    assert (send["tasks"], send["succeeded"], send["failed"], send["active"]) == (5, 4, 1, 0)
    assert send["failure_rate"] == 0.2
    assert (send["p50_seconds"], send["p95_seconds"]) == (3.0, 10.0)
    assert send["per_hour"] == 5.0  # five finished in a one-hour window
    bill = groups["jobs.bill"]
    assert (bill["tasks"], bill["succeeded"], bill["failed"], bill["active"]) == (3, 1, 1, 1)
    assert bill["failure_rate"] == 0.5 and bill["p50_seconds"] == 0.5
    total = data["total"]
    assert (total["group"], total["tasks"], total["failed"]) == ("(all)", 8, 2)

    wider = json.loads(run_cli(capsys, "report", "--since", "1d", "--json", "--url", seeded).out)
    assert [g["group"] for g in wider["groups"]] == ["jobs.bill", "jobs.old", "jobs.send"]


def test_report_table_by_tag_and_hour(seeded: str, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "report", "--since", "1h", "--by", "tag:team", "--url", seeded)
    assert result.status == 0, result.err
    assert result.lines[0].startswith("tasks created ") and result.lines[0].endswith(": 8 read")
    header = result.lines[1]
    assert header.split() == [
        "TAG", "team", "TASKS", "OK", "FAILED", "FAIL", "RATE", "P50", "P95", "PER", "HOUR",
    ]  # fmt: skip
    rows = {line.split()[0]: line for line in result.lines[2:]}
    assert list(rows) == ["(none)", "a", "b", "(all)"]
    assert rows["a"].split()[1:6] == ["4", "4", "0", "0.0%", "2.00s"]
    assert rows["b"].split()[3:5] == ["1", "100.0%"]
    # Aligned: each column starts where its header does.
    at = header.index("FAILED")
    assert all(line[at:].split()[0].isdigit() for line in result.lines[2:])

    hourly = run_cli(capsys, "report", "--since", "1h", "--by", "hour", "--json", "--url", seeded)
    hours = json.loads(hourly.out)["groups"]
    assert sum(g["tasks"] for g in hours) == 8
    assert all(len(g["group"]) == len("2026-01-01 00:00") for g in hours)


def test_report_as_csv(seeded: str, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "report", "--since", "1h", "--csv", "--url", seeded)
    assert result.status == 0, result.err
    rows = list(csv.DictReader(io.StringIO(result.out)))
    assert [row["func"] for row in rows] == ["jobs.bill", "jobs.send", "(all)"]
    assert rows[1]["failure_rate"] == "0.2" and rows[1]["p95_seconds"] == "10.0"
    assert rows[0]["active"] == "1"


def test_report_says_when_it_stopped_at_its_bound(
    seeded: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "MAX_REPORT_TASKS", 3)
    data = json.loads(run_cli(capsys, "report", "--since", "1h", "--json", "--url", seeded).out)
    assert (data["tasks_read"], data["complete"], data["total"]["tasks"]) == (3, False, 3)
    text = run_cli(capsys, "report", "--since", "1h", "--url", seeded)
    assert "stopped at the newest 3 tasks" in text.out


def test_report_of_an_empty_window(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    seed(database_url, [])
    result = run_cli(capsys, "report", "--url", database_url)
    assert result.status == 0, result.err
    assert result.lines[1:] == ["no tasks in this window"]
    future = run_cli(capsys, "report", "--since", "2999-01-01", "--url", database_url)
    assert future.status == 2
    assert future.err == "taskflow: error: --since 2999-01-01 00:00:00 is not in the past\n"
