"""The quick start, served by a real uvicorn process on each database.

What only a real process shows: the example imports and starts from a clean
directory, ``POST /signup`` returns a task id, the task runs after the
response, and its row is there for plain SQL afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.subprocess


@pytest.fixture
def served_app(backend_name: str, schema_db_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    workdir = tmp_path / "app"
    workdir.mkdir()
    if backend_name == "sqlite":
        # The example's own default: tasks.db in its working directory, migrated at startup.
        env.pop("TASKFLOW_DATABASE_URL", None)
        url = f"sqlite:///{workdir / 'tasks.db'}"
    else:
        env["TASKFLOW_DATABASE_URL"] = url = schema_db_url
    log_path = tmp_path / "uvicorn.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "examples.basic_app:app", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/tasks/metrics", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"uvicorn did not start:\n{log_path.read_text()}")
                time.sleep(0.1)
        yield base, url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail("uvicorn did not stop within 15 s of SIGTERM")
        finally:
            log.close()
        # uvicorn re-raises SIGTERM after a clean shutdown, so -15 is a clean exit too.
        assert process.returncode in (0, -15), log_path.read_text()
        assert "Application shutdown complete" in log_path.read_text()


def _wait_for_status(base: str, task_id: str, status: str) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while True:
        body: dict[str, object] = httpx.get(f"{base}/tasks/{task_id}", timeout=5).json()
        if body.get("status") == status or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def _rows(url: str, task_id: str) -> list[tuple[object, ...]]:
    sync = url.replace("mysql://", "mysql+pymysql://", 1)
    if sync.startswith("postgresql://"):
        pytest.importorskip("asyncpg")
        import asyncio

        import asyncpg

        async def fetch() -> list[tuple[object, ...]]:
            conn = await asyncpg.connect(sync)
            try:
                records = await conn.fetch(
                    "SELECT func_name, status, kwargs::text FROM taskflow_tasks WHERE id = $1",
                    task_id,
                )
                return [tuple(r) for r in records]
            finally:
                await conn.close()

        return asyncio.run(fetch())
    engine = create_engine(sync)
    try:
        with engine.connect() as conn:
            result = conn.execute(
                text("SELECT func_name, status, kwargs FROM taskflow_tasks WHERE id = :id"),
                {"id": task_id},
            )
            return [tuple(row) for row in result]
    finally:
        engine.dispose()


def test_signup_task_runs_and_is_a_row(served_app: tuple[str, str]) -> None:
    base, url = served_app
    response = httpx.post(f"{base}/signup", params={"email": "user@example.com"}, timeout=5)
    assert response.status_code == 200
    task_id = response.json()["task_id"]

    body = _wait_for_status(base, task_id, "success")
    assert body["status"] == "success", body
    assert body["func_name"] == "send_email"
    assert body["executor"] == "thread"
    assert any("Sending email to user@example.com" in line for line in body["logs"])  # type: ignore[union-attr]

    listed = httpx.get(f"{base}/tasks", timeout=5).json()
    assert [t["task_id"] for t in listed] == [task_id]
    metrics = httpx.get(f"{base}/tasks/metrics", timeout=5).json()
    assert metrics["success"] == 1 and metrics["total"] == 1

    rows = _rows(url, task_id)
    assert len(rows) == 1
    func_name, status, kwargs = rows[0]
    assert (func_name, status) == ("send_email", "success")
    assert "user@example.com" in str(kwargs)
