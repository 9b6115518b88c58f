"""Tasks and schedules for the CLI tests, written through the repository a running app uses.

Each test seeds its store, runs a command in-process (``taskflow.cli.main``,
which runs its own event loop) or as ``python -m taskflow``, and reads the
store back through the same interface: no mocks, the real backend.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from taskflow import cli
from taskflow.audit import list_entries
from taskflow.ids import new_task_id
from taskflow.models import AuditEntry, TaskLogEntry, TaskRecord, TaskStatus, utcnow
from taskflow.repository.base import TaskRepository, WriteBatch
from taskflow.repository.factory import create_repository
from taskflow.schedules import ScheduleDefinition, ScheduleState
from taskflow.settings import resolve_database_url

_R = TypeVar("_R")
ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Result:
    """What a command printed and returned."""

    status: int
    out: str
    err: str
    lines: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.lines = self.out.splitlines()


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """``taskflow ARGS`` in this process."""
    capsys.readouterr()
    status = cli.main(list(args))
    captured = capsys.readouterr()
    return Result(status, captured.out, captured.err)


def run_module(*args: str, cwd: Path, stdin: str | None = None) -> Result:
    """``python -m taskflow ARGS`` in a process of its own, as a user runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "taskflow", *args],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(cwd)},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def with_repository(url: str, work: Callable[[TaskRepository], Awaitable[_R]]) -> _R:
    """Run ``work`` on an opened repository for ``url``, on an event loop of its own."""

    async def main() -> _R:
        repository = create_repository(resolve_database_url(url), connections=2)
        await repository.open()
        if repository.prepares_itself:  # SQLite and Redis; the servers have the models
            await repository.prepare_schema(migrate=True)
        try:
            return await work(repository)
        finally:
            await repository.close()

    return asyncio.run(main())


def task(
    func_name: str,
    status: TaskStatus,
    *,
    ago: timedelta = timedelta(minutes=5),
    duration: float | None = 1.0,
    **extra: Any,
) -> TaskRecord:
    """A task created ``ago``, finished after ``duration`` seconds unless still active."""
    created = utcnow() - ago
    active = status in (TaskStatus.PENDING, TaskStatus.RUNNING)
    started = None if status is TaskStatus.PENDING else created
    ended = None if active or duration is None else created + timedelta(seconds=duration)
    values: dict[str, Any] = {
        "task_id": new_task_id(),
        "func_name": func_name,
        "status": status,
        "created_at": created,
        "updated_at": ended or created,
        "run_at": created,
        "start_time": started,
        "end_time": ended,
        "executor": "async",
        "args": (),
        "kwargs": {},
        "payload": b'{"args": [], "kwargs": {}}',
        "lease_epoch": 1,
    }
    if status is TaskStatus.FAILED:
        values["error"] = f"RuntimeError: {func_name} broke"
        values["stacktrace"] = 'Traceback (most recent call last):\n  File "jobs.py"\nRuntimeError'
    values.update(extra)
    return TaskRecord(**values)


def log_line(record: TaskRecord, message: str, level: str = "info") -> TaskLogEntry:
    return TaskLogEntry(record.task_id, 0, level, message, record.created_at)


def seed(url: str, records: Sequence[TaskRecord], logs: Sequence[TaskLogEntry] = ()) -> None:
    """Insert ``records`` (and log lines) in one batch."""

    async def work(repository: TaskRepository) -> None:
        outcome = await repository.apply(WriteBatch(inserts=list(records), logs=list(logs)))
        assert not outcome.rejected

    with_repository(url, work)


def get_task(url: str, task_id: str) -> TaskRecord | None:
    return with_repository(url, lambda repository: repository.get_task(task_id))


def audit_entries(url: str) -> list[AuditEntry]:
    """The audit log, newest first."""
    return with_repository(url, lambda r: list_entries(r, limit=100, before=None))


def seed_schedule(url: str, name: str, *, every: float = 3600.0) -> ScheduleState:
    """A schedule row as an app registering ``name`` (every ``every`` seconds) writes it."""
    now = utcnow()
    definition = ScheduleDefinition(name, f"every {every:g}s", every, None, "UTC")

    async def work(repository: TaskRepository) -> ScheduleState:
        return await repository.sync_schedule(
            definition, first_run_at=now + timedelta(seconds=every), now=now
        )

    return with_repository(url, work)


def get_schedule(url: str, name: str) -> ScheduleState | None:
    return with_repository(url, lambda repository: repository.get_schedule(name))


def iso(moment: datetime) -> str:
    return moment.isoformat()
