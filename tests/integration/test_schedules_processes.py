"""Three real uvicorn processes share one database and one sub-second schedule.

Each slot must fire once and each fired task run once, whichever process
fired or ran it.  The app is ``tests/apps/scheduled_app.py``; every run
appends its task id to a journal file of its own process (fsynced), so a task
that ran twice, on any process, shows up twice.  Run with ``-s`` to see the
one-line summary.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from taskflow.db.tables import tasks_table as T
from taskflow.settings import resolve_database_url
from tests.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.subprocess

EVERY = 0.2
RUN_FOR = 3.0  # seconds with all three instances up
STARTUP_TIMEOUT = 30.0
UVICORN = [sys.executable, "-m", "uvicorn", "tests.apps.scheduled_app:app", "--host", "127.0.0.1"]


@dataclass
class Instance:
    name: str
    process: subprocess.Popen[bytes]
    base: str
    log_path: Path
    log: IO[bytes]

    def get(self, route: str) -> Any:
        response = httpx.get(f"{self.base}{route}", timeout=10)
        assert response.status_code == 200, (response.status_code, response.text)
        return response.json()

    def post(self, route: str) -> Any:
        response = httpx.post(f"{self.base}{route}", timeout=10)
        assert response.status_code == 200, (response.status_code, response.text)
        return response.json()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                httpx.get(f"{self.base}/tasks/schedules", timeout=1)
                return
            except httpx.TransportError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.log.flush()
                    pytest.fail(f"{self.name} did not start:\n{self.log_path.read_text()}")
                time.sleep(0.05)

    def close(self) -> None:
        try:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        finally:
            self.log.close()


@pytest.fixture
def instances(schema_db_url: str, tmp_path: Path) -> Iterator[list[Instance]]:
    journal = tmp_path / "journal"
    journal.mkdir()
    started: list[Instance] = []
    try:
        for name in ("a", "b", "c"):
            port = free_port()
            env = dict(
                os.environ,
                PYTHONPATH=str(ROOT),
                TASKFLOW_DATABASE_URL=schema_db_url,
                TASKFLOW_INSTANCE_NAME=name,
                JOURNAL_DIR=str(journal),
                SCHEDULE_EVERY=str(EVERY),
            )
            log_path = tmp_path / f"uvicorn-{name}.log"
            log = log_path.open("wb")
            process = subprocess.Popen(
                [*UVICORN, "--port", str(port)],
                cwd=tmp_path,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            started.append(Instance(name, process, f"http://127.0.0.1:{port}", log_path, log))
        for instance in started:
            instance.wait_ready()
        yield started
    finally:
        for instance in started:
            instance.close()


def _journal(directory: Path) -> list[tuple[str, str]]:
    lines = []
    for path in sorted(directory.glob("*.journal")):
        for raw in path.read_text().splitlines():
            instance, task_id = raw.split(" ")
            lines.append((instance, task_id))
    return lines


def _fired(url: str) -> list[dict[str, Any]]:
    """The schedule's task rows, read through taskflow's engine (timestamps aware UTC)."""

    async def fetch() -> list[dict[str, Any]]:
        engine = create_async_engine(resolve_database_url(url).url, poolclass=NullPool)
        stmt = (
            select(T.c.id, T.c.status, T.c.scheduled_for)
            .where(T.c.schedule_name == "beat")
            .order_by(T.c.scheduled_for)
        )
        try:
            async with engine.connect() as conn:
                return [dict(r._mapping) for r in await conn.execute(stmt)]
        finally:
            await engine.dispose()

    return asyncio.run(fetch())


def test_three_processes_fire_each_slot_once(
    instances: list[Instance], schema_db_url: str, tmp_path: Path, backend_name: str
) -> None:
    first = instances[0]
    all_up = datetime.now(timezone.utc)
    time.sleep(RUN_FOR)
    stats = [instance.get("/scheduler") for instance in instances]
    assert first.post("/tasks/schedules/beat/pause")["paused"] is True
    for instance in instances:  # the pause is shared: every instance sees it
        listed = instance.get("/tasks/schedules")
        assert [(s["name"], s["paused"]) for s in listed] == [("beat", True)]

    url = schema_db_url
    deadline = time.monotonic() + 15
    while True:  # let what fired before the pause finish
        fired = _fired(url)
        if all(row["status"] == "success" for row in fired):
            break
        assert time.monotonic() < deadline, fired
        time.sleep(0.1)
    time.sleep(3 * EVERY)
    assert len(_fired(url)) == len(fired)  # paused: nothing more fires

    journal = _journal(tmp_path / "journal")
    runs = Counter(task_id for _instance, task_id in journal)
    slots = [row["scheduled_for"] for row in fired]
    per_slot = Counter(slots)
    with_all_up = [s for s in slots if s >= all_up]
    missed = sum(
        round((b - a).total_seconds() / EVERY) - 1 for a, b in itertools.pairwise(with_all_up)
    )
    ran_by = Counter(instance for instance, _task_id in journal)
    print(
        f"\n[{backend_name}] 3 uvicorn processes, every {EVERY}s: {len(slots)} slots fired, "
        f"{len(with_all_up)} with all three up; fired by {[s['fired'] for s in stats]}, "
        f"races lost {sum(s['lost'] for s in stats)}, run by {dict(sorted(ran_by.items()))}; "
        f"duplicate slots {sum(n - 1 for n in per_slot.values())}, "
        f"tasks run twice {sum(n - 1 for n in runs.values())}, missed slots {missed}"
    )
    assert len(with_all_up) >= 8
    assert max(per_slot.values()) == 1
    assert sorted(runs) == sorted(row["id"] for row in fired)  # every fired task ran...
    assert set(runs.values()) == {1}  # ...exactly once
    assert all(s["duplicates"] == 0 for s in stats)
    assert sum(s["lost"] for s in stats) > 0  # the instances did race for the slots
    assert missed <= len(with_all_up) // 2  # latency on a loaded machine, never a duplicate
