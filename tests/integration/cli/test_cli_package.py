"""``python -m taskflow``, ``--version``, the console script's entry point, and the prompt.

On SQLite only: what is tested here is the command line itself, not a backend.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

import taskflow
from taskflow.models import TaskStatus
from taskflow.settings import ENV_DATABASE_URL
from tests.integration.cli.seeding import ROOT, audit_entries, run_cli, run_module, seed, task


@pytest.fixture(autouse=True)
def _no_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DATABASE_URL, raising=False)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/tasks.db"


def test_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_module("--version", cwd=tmp_path)
    assert (result.status, result.out) == (0, f"taskflow {taskflow.__version__}\n")
    assert run_cli(capsys, "--version").out == f"taskflow {taskflow.__version__}\n"


def test_the_console_script_is_taskflow_cli_main() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"] == {"taskflow": "taskflow.cli:main"}
    from taskflow.cli import main

    assert callable(main)


def test_python_dash_m_taskflow_runs_the_commands(tmp_path: Path, url: str) -> None:
    failed = task("jobs.send", TaskStatus.FAILED)
    seed(url, [failed])
    listing = run_module("tasks", "list", "--json", "--url", url, cwd=tmp_path)
    assert listing.status == 0, listing.err
    assert [t["task_id"] for t in json.loads(listing.out)] == [failed.task_id]

    helped = run_module("--help", cwd=tmp_path)
    assert helped.status == 0
    assert re.findall(r"^    (\S+)", helped.out, re.MULTILINE) == [
        "tasks", "report", "schedules", "db",
    ]  # fmt: skip

    bad = run_module("tasks", "list", "--since", "soon", "--url", url, cwd=tmp_path)
    assert (bad.status, bad.out) == (2, "")
    assert bad.err.splitlines() == [
        "taskflow: error: taskflow tasks list: argument --since: expected a window such as "
        "30m, 1h, 2d or 1w, or an ISO 8601 time such as 2026-05-01T08:00, got 'soon' "
        "(see taskflow tasks list --help)"
    ]
    unknown = run_module("tasks", "show", "nope", "--url", url, cwd=tmp_path)
    assert (unknown.status, unknown.err) == (1, "taskflow: error: no task has id 'nope'\n")
    away = run_module("tasks", "list", "--url", "postgresql://u@127.0.0.1:9/none", cwd=tmp_path)
    assert away.status == 1
    assert len(away.err.splitlines()) == 1
    assert away.err.startswith("taskflow: error: postgresql+asyncpg://u@127.0.0.1:9/none: ")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "retried"), [("y\n", True), ("\n", False)])
def test_retry_failed_asks_on_a_terminal(
    url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
    retried: bool,
) -> None:
    seed(url, [task("jobs.send", TaskStatus.FAILED), task("jobs.send", TaskStatus.FAILED)])
    monkeypatch.setattr("sys.stdin", Terminal(answer))
    result = run_cli(capsys, "tasks", "retry-failed", "--func", "jobs.send", "--url", url)
    assert result.status == 0, result.err
    assert result.err.startswith(
        "Retry 2 failed or interrupted task(s) of jobs.send created since "
    )
    assert result.err.endswith(" UTC (those retried before are skipped)? [y/N] ")
    if retried:
        assert result.out == "retried 2 task(s), skipped 0\n"
        assert [entry.action for entry in audit_entries(url)] == ["retry_failed"]
    else:
        assert result.out == "nothing retried\n"
        assert audit_entries(url) == []
