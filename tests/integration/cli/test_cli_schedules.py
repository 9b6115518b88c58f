"""``taskflow schedules list|pause|resume|run-now`` on every backend, audited with the OS user."""

from __future__ import annotations

import getpass
import json

import pytest

from taskflow.models import utcnow
from taskflow.settings import ENV_DATABASE_URL
from tests.conftest import EVERY_BACKEND
from tests.integration.cli.seeding import (
    audit_entries,
    get_schedule,
    run_cli,
    seed_schedule,
)

pytestmark = pytest.mark.parametrize("backend_name", EVERY_BACKEND, indirect=True)


@pytest.fixture(autouse=True)
def _no_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DATABASE_URL, raising=False)


def test_list(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    seed_schedule(database_url, "reports.nightly", every=3600)
    seed_schedule(database_url, "cleanup", every=60)
    result = run_cli(capsys, "schedules", "list", "--url", database_url)
    assert result.status == 0, result.err
    assert result.lines[0].split()[:3] == ["NAME", "TRIGGER", "NEXT"]
    assert [line.split()[0] for line in result.lines[1:]] == ["cleanup", "reports.nightly"]
    assert result.lines[2].split()[1:3] == ["every", "3600s"]
    assert result.lines[2].endswith("active")
    as_json = json.loads(run_cli(capsys, "schedules", "list", "--json", "--url", database_url).out)
    assert [(s["name"], s["every"], s["paused"]) for s in as_json] == [
        ("cleanup", 60.0, False), ("reports.nightly", 3600.0, False),
    ]  # fmt: skip


def test_pause_resume_and_run_now(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    seeded = seed_schedule(database_url, "beat", every=3600)
    url = ("--url", database_url)

    paused = run_cli(capsys, "schedules", "pause", "beat", *url)
    assert paused.status == 0, paused.err
    assert paused.out == "paused beat: no instance fires it until it is resumed\n"
    state = get_schedule(database_url, "beat")
    assert state is not None and state.paused

    refused = run_cli(capsys, "schedules", "run-now", "beat", *url)
    assert (refused.status, refused.out) == (1, "")
    assert refused.err == (
        "taskflow: error: schedule 'beat' is paused: `taskflow schedules resume beat` first\n"
    )

    resumed = run_cli(capsys, "schedules", "resume", "beat", "--json", *url)
    assert resumed.status == 0, resumed.err
    assert json.loads(resumed.out)["paused"] is False
    state = get_schedule(database_url, "beat")
    assert state is not None and not state.paused
    assert state.next_run_at is not None and state.next_run_at > utcnow()

    before = utcnow()
    run_now = run_cli(capsys, "schedules", "run-now", "beat", *url)
    assert run_now.status == 0, run_now.err
    state = get_schedule(database_url, "beat")
    assert state is not None and state.next_run_at is not None
    assert state.next_run_at <= utcnow() and state.next_run_at >= before.replace(microsecond=0)
    assert (state.every_seconds, state.trigger) == (seeded.every_seconds, seeded.trigger)

    entries = audit_entries(database_url)
    assert [(e.action, e.actor, e.detail) for e in reversed(entries)] == [
        (action, getpass.getuser(), {"schedule": "beat", "via": "cli"})
        for action in ("schedule_pause", "schedule_resume", "schedule_run_now")
    ]


@pytest.mark.parametrize("action", ["pause", "resume", "run-now"])
def test_an_unknown_schedule_is_one_line_and_exit_1(
    database_url: str, capsys: pytest.CaptureFixture[str], action: str
) -> None:
    seed_schedule(database_url, "beat")
    result = run_cli(capsys, "schedules", action, "nope", "--url", database_url)
    assert (result.status, result.out) == (1, "")
    assert result.err == (
        "taskflow: error: no schedule named 'nope': `taskflow schedules list` lists them\n"
    )
    assert audit_entries(database_url) == []
