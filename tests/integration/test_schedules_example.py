"""``examples/scheduled_app.py`` on every database: it starts, fires, lists, pauses and resumes."""

from __future__ import annotations

import asyncio
import importlib
import time
from pathlib import Path
from types import ModuleType

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
ROUTE = "/tasks/schedules"


def load_example(monkeypatch: pytest.MonkeyPatch, url: str) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT))  # examples/ is not an installed package
    monkeypatch.setenv("TASKFLOW_DATABASE_URL", url)
    module = importlib.import_module("examples.scheduled_app")
    return importlib.reload(module)  # a fresh manager on this test's database


async def test_scheduled_example(
    monkeypatch: pytest.MonkeyPatch, backend_name: str, db_url: str, schema_db_url: str
) -> None:
    example = load_example(monkeypatch, db_url if backend_name == "sqlite" else schema_db_url)
    app = example.app
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            listed = {s["name"]: s for s in (await client.get(ROUTE)).json()}
            assert set(listed) == {"refresh_exchange_rates", "send_daily_report"}
            report = listed["send_daily_report"]
            assert report["trigger"] == "0 9 * * 1-5 (Europe/Paris)"
            assert report["timezone"] == "Europe/Paris" and report["paused"] is False
            assert listed["refresh_exchange_rates"]["trigger"] == "every 30s"

            # run_on_startup: the interval job fired when the app started.
            deadline = time.monotonic() + 10
            while True:
                rates = {s["name"]: s for s in (await client.get(ROUTE)).json()}
                if rates["refresh_exchange_rates"]["last_status"] == "success":
                    break
                assert time.monotonic() < deadline, rates
                await asyncio.sleep(0.02)
            task_id = rates["refresh_exchange_rates"]["last_task_id"]
            task = (await client.get(f"/tasks/{task_id}")).json()
            assert task["source"] == "scheduled" and task["func_name"] == "refresh_exchange_rates"
            assert task["logs"][0].endswith("Refreshing exchange rates")

            # The cron job's function, enqueued by hand.
            manual = (await client.post("/reports")).json()["task_id"]
            await example.task_manager.drain()
            done = (await client.get(f"/tasks/{manual}")).json()
            assert done["status"] == "success" and done["source"] == "manual"

            paused = await client.post(f"{ROUTE}/send_daily_report/pause")
            assert paused.json()["paused"] is True
            resumed = await client.post(f"{ROUTE}/send_daily_report/resume")
            assert resumed.json()["paused"] is False
            assert resumed.json()["next_run"] == report["next_run"]  # still ahead: unchanged


async def test_scheduled_example_one_offs(
    monkeypatch: pytest.MonkeyPatch, backend_name: str, db_url: str, schema_db_url: str
) -> None:
    example = load_example(monkeypatch, db_url if backend_name == "sqlite" else schema_db_url)
    app = example.app
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            first = (await client.post("/trials/42", params={"days": 14})).json()
            moved = (await client.post("/trials/42", params={"days": 30})).json()
            armed = (await client.get("/trials")).json()
            assert [entry["task_id"] for entry in armed] == [moved["task_id"]]
            replaced = (await client.get(f"/tasks/{first['task_id']}")).json()
            assert replaced["status"] == "cancelled"
            assert (await client.delete("/trials/42")).json() == {"cancelled": True}
            assert (await client.get("/trials")).json() == []

            later = (await client.post("/welcome/42")).json()["task_id"]
            task = (await client.get(f"/tasks/{later}")).json()
            assert task["status"] == "pending" and task["run_at"] > task["created_at"]
