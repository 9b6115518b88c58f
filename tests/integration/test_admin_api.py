"""The admin API's state changes and deployment views on every SQL backend.

Retry, bulk retry, replay of failures, the audit log, live instances and the
registered functions, as an HTTP client (httpx over ASGI) sees them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request
from sqlalchemy import event, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from taskflow import TaskAdmin, TaskManager
from taskflow import replay as replay_module
from taskflow.db.tables import audit_table, instances_table, tasks_table
from taskflow.ids import new_task_id
from taskflow.manager import MAX_ADOPTED
from taskflow.settings import resolve_database_url
from taskflow.web.access import Actor, is_same_origin
from taskflow.web.routes import create_router
from taskflow.web.schedule_routes import create_schedule_router
from tests.polling import eventually

T = tasks_table


@dataclass
class Admin:
    """A started app with the admin API, its manager, its jobs and a raw-SQL engine."""

    manager: TaskManager
    client: httpx.AsyncClient
    raw: AsyncEngine
    jobs: dict[str, Any]
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]]
    failing: set[str]
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        async with self.raw.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(text(sql), params)]

    async def status(self, task_id: str) -> str | None:
        rows = await self.rows("SELECT status FROM taskflow_tasks WHERE id = :i", i=task_id)
        return rows[0]["status"] if rows else None

    async def finished(self, task_id: str) -> str:
        async def done() -> str | None:
            status = await self.status(task_id)
            return status if status in ("success", "failed", "interrupted", "cancelled") else None

        return await eventually(done)

    async def failed_task(self, name: str, *args: Any, **kwargs: Any) -> str:
        """Run job ``name`` once while it is set to fail; returns the failed task's id."""
        self.failing.add(name)
        try:
            task_id = await self.manager.enqueue(self.jobs[name], *args, **kwargs)
            assert await self.finished(task_id) == "failed"
        finally:
            self.failing.discard(name)
        return task_id

    async def insert_rows(self, rows: list[dict[str, Any]]) -> None:
        async with self.raw.begin() as conn:
            await conn.execute(insert(T), rows)

    async def audit(self) -> list[dict[str, Any]]:
        response = await self.client.get("/tasks/audit", params={"limit": 500})
        assert response.status_code == 200, response.text
        entries: list[dict[str, Any]] = response.json()
        return entries


def task_row(
    func_name: str,
    *,
    status: str = "failed",
    created_at: datetime | None = None,
    args: list[Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A task row as another process (or an earlier release) would have left it."""
    created = created_at or datetime.now(timezone.utc)
    row: dict[str, Any] = {
        "id": new_task_id(),
        "func_name": func_name,
        "status": status,
        "source": "manual",
        "executor": "async",
        "attempt": 0,
        "max_retries": 0,
        "run_at": created,
        "created_at": created,
        "updated_at": created,
        "finished_at": created if status not in ("pending", "running") else None,
        "error": "RuntimeError: earlier failure" if status == "failed" else None,
        "args": args if args is not None else [],
        "kwargs": {},
        "payload_format": "json",
        "lease_epoch": 1,
        # Every row names every column: an executemany takes its columns from the first.
        "retried_from": None,
    }
    row.update(extra)
    return row


class CardExpiredError(RuntimeError):
    """Never retried by billing.charge (its own failures are plain RuntimeErrors)."""


def register_jobs(
    manager: TaskManager,
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]],
    failing: set[str],
    gate: asyncio.Event,
) -> dict[str, Any]:
    async def flaky_job(order: int, customer: dict[str, Any], *, note: str = "") -> str:
        calls.append(("flaky_job", (order, customer), {"note": note}))
        if "flaky_job" in failing:
            raise RuntimeError(f"order {order} failed")
        return f"ok {order}"

    def charge(amount: int) -> None:  # registered under another name
        calls.append(("billing.charge", (amount,), {}))
        if "billing.charge" in failing:
            raise RuntimeError("card declined")

    async def quick_job(n: int = 0) -> None:
        if "quick_job" in failing:
            raise RuntimeError("quick failure")

    async def blocking_job() -> None:
        await gate.wait()

    async def hourly_report() -> None:
        return None

    manager.task(retries=2, delay=0.0, priority=4)(flaky_job)
    manager.task(
        name="billing.charge",
        retries=1,
        executor="thread",
        timeout=30,
        max_delay=60.0,
        jitter="equal",
        retry_on=(RuntimeError, ConnectionError),
        dont_retry_on=CardExpiredError,
    )(charge)
    manager.task()(quick_job)
    manager.task()(blocking_job)
    manager.schedule(every=3600, name="hourly_report")(hourly_report)
    return {
        "flaky_job": flaky_job,
        "billing.charge": charge,
        "quick_job": quick_job,
        "blocking_job": blocking_job,
    }


@pytest.fixture
async def admin(database_url: str) -> AsyncIterator[Admin]:
    manager = TaskManager(database_url=database_url, shutdown_grace=5.0)
    app = FastAPI()
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    failing: set[str] = set()
    gate = asyncio.Event()
    jobs = register_jobs(manager, calls, failing, gate)
    TaskAdmin(app, manager)
    raw = create_async_engine(resolve_database_url(database_url).url, poolclass=NullPool)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                built = Admin(manager, client, raw, jobs, calls, failing, gate)
                try:
                    yield built
                finally:
                    gate.set()
                    await manager.drain()
    finally:
        await raw.dispose()


# -- POST /tasks/{task_id}/retry ---------------------------------------------------------


async def test_retry_runs_the_task_again_with_the_same_arguments(admin: Admin) -> None:
    original = await admin.failed_task(
        "flaky_job", 7, {"name": "Ada", "tier": [1, 2]}, note="rush", tags={"team": "ops"}
    )
    first_calls = len(admin.calls)
    assert first_calls == 3  # retries=2: three attempts, all failed

    response = await admin.client.post(f"/tasks/{original}/retry")
    assert response.status_code == 200, response.text
    body = response.json()
    new_id = body["task_id"]
    assert new_id != original
    assert body["task"]["task_id"] == new_id
    assert body["task"]["retried_from"] == original
    assert body["task"]["source"] == "retry"
    assert body["task"]["func_name"] == "flaky_job"

    assert await admin.finished(new_id) == "success"
    assert admin.calls[first_calls:] == [
        ("flaky_job", (7, {"name": "Ada", "tier": [1, 2]}), {"note": "rush"})
    ]
    old_row, new_row = [
        (await admin.rows("SELECT * FROM taskflow_tasks WHERE id = :i", i=task_id))[0]
        for task_id in (original, new_id)
    ]
    for column in ("func_name", "priority", "executor", "payload_format", "payload"):
        assert new_row[column] == old_row[column], column
    assert new_row["priority"] == 4
    assert (new_row["source"], new_row["retried_from"]) == ("retry", original)
    assert new_row["attempt"] == 0 and new_row["max_retries"] == 2
    assert (await admin.client.get(f"/tasks/{new_id}")).json()["tags"] == {"team": "ops"}
    assert (await admin.client.get(f"/tasks/{original}")).json()["status"] == "failed"


async def test_retry_of_a_name_registered_function(admin: Admin) -> None:
    """The described system stored ``name=`` in one place and looked it up in another."""
    original = await admin.failed_task("billing.charge", 1250)
    stored = await admin.rows("SELECT func_name FROM taskflow_tasks WHERE id = :i", i=original)
    assert stored[0]["func_name"] == "billing.charge"

    response = await admin.client.post(f"/tasks/{original}/retry")
    assert response.status_code == 200, response.text
    new_id = response.json()["task_id"]
    assert await admin.finished(new_id) == "success"
    assert admin.calls[-1] == ("billing.charge", (1250,), {})
    detail = (await admin.client.get(f"/tasks/{new_id}")).json()
    assert (detail["func_name"], detail["executor"]) == ("billing.charge", "thread")


async def test_retry_of_an_interrupted_task(admin: Admin) -> None:
    row = task_row("flaky_job", status="interrupted", args=[3, {"name": "Bo"}])
    await admin.insert_rows([row])

    response = await admin.client.post(f"/tasks/{row['id']}/retry")
    assert response.status_code == 200, response.text
    assert await admin.finished(response.json()["task_id"]) == "success"
    assert admin.calls[-1] == ("flaky_job", (3, {"name": "Bo"}), {"note": ""})


async def test_retry_refusals(admin: Admin) -> None:
    missing = await admin.client.post(f"/tasks/{new_task_id()}/retry")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Task not found"}

    done = await admin.manager.enqueue(admin.jobs["quick_job"])
    assert await admin.finished(done) == "success"
    finished = await admin.client.post(f"/tasks/{done}/retry")
    assert finished.status_code == 400
    assert "only failed or interrupted" in finished.json()["detail"]

    running = await admin.manager.enqueue(admin.jobs["blocking_job"])
    await eventually(lambda: _is(admin, running, "running"))
    assert (await admin.client.post(f"/tasks/{running}/retry")).status_code == 400

    orphan = task_row("app.jobs:removed_job")
    await admin.insert_rows([orphan])
    gone = await admin.client.post(f"/tasks/{orphan['id']}/retry")
    assert gone.status_code == 409
    assert "app.jobs:removed_job" in gone.json()["detail"]
    assert "@task_manager.task" in gone.json()["detail"]  # says what to do

    retries = await admin.rows("SELECT id FROM taskflow_tasks WHERE source = 'retry'")
    assert retries == []  # no refusal created anything
    actions = [entry["action"] for entry in await admin.audit()]
    assert "retry" not in actions


async def _is(admin: Admin, task_id: str, status: str) -> bool:
    return await admin.status(task_id) == status


async def test_retry_keeps_encrypted_arguments_encrypted(
    database_url: str, backend_name: str
) -> None:
    from cryptography.fernet import Fernet

    manager = TaskManager(database_url=database_url, encrypt_args_key=Fernet.generate_key())
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    failing = {"flaky_job"}
    jobs = register_jobs(manager, calls, failing, asyncio.Event())
    app = FastAPI()
    TaskAdmin(app, manager)
    secret = {"card": "4111-1111-1111-1111", "when": datetime(2026, 1, 31, tzinfo=timezone.utc)}
    raw = create_async_engine(resolve_database_url(database_url).url, poolclass=NullPool)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                admin = Admin(manager, client, raw, jobs, calls, failing)
                original = await manager.enqueue(jobs["flaky_job"], 9, secret, note="vip")
                assert await admin.finished(original) == "failed"
                failing.clear()

                response = await client.post(f"/tasks/{original}/retry")
                assert response.status_code == 200, response.text
                new_id = response.json()["task_id"]
                assert await admin.finished(new_id) == "success"
                assert calls[-1] == ("flaky_job", (9, secret), {"note": "vip"})

                rows = {
                    row["id"]: row
                    for row in await admin.rows(
                        "SELECT id, args, kwargs, payload, payload_format FROM taskflow_tasks"
                    )
                }
                assert rows[new_id]["payload_format"] == "fernet"
                assert rows[new_id]["args"] is None and rows[new_id]["kwargs"] is None
                # The very same ciphertext: copied, never decrypted and re-encrypted.
                assert bytes(rows[new_id]["payload"]) == bytes(rows[original]["payload"])
                assert b"4111" not in bytes(rows[new_id]["payload"])
                await manager.drain()
    finally:
        await raw.dispose()


async def test_encrypted_task_without_a_key_is_409(admin: Admin) -> None:
    row = task_row("flaky_job", args=None, payload=b"gAAAA-not-for-us", payload_format="fernet")
    row["args"] = row["kwargs"] = None
    await admin.insert_rows([row])
    response = await admin.client.post(f"/tasks/{row['id']}/retry")
    assert response.status_code == 409
    assert "encrypt_args_key" in response.json()["detail"]
    bulk = await admin.client.post("/tasks/bulk-retry", json={"task_ids": [row["id"]]})
    assert bulk.json()["dispatched"] == 0 and bulk.json()["skipped"] == 1


# -- POST /tasks/bulk-retry -----------------------------------------------------------------


async def test_bulk_retry_dispatches_the_retryable_and_skips_the_rest(admin: Admin) -> None:
    first = await admin.failed_task("flaky_job", 1, {})
    second = await admin.failed_task("billing.charge", 2)
    done = await admin.manager.enqueue(admin.jobs["quick_job"])
    assert await admin.finished(done) == "success"
    orphan = task_row("app.jobs:removed_job")
    await admin.insert_rows([orphan])
    requested = [first, second, done, new_task_id(), orphan["id"], first]

    response = await admin.client.post("/tasks/bulk-retry", json={"task_ids": requested})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["dispatched"], body["skipped"]) == (2, 4)
    assert body["skipped_by_reason"] == {
        "not_found": 1,
        "duplicate": 1,
        "not_retryable": 1,
        "already_retried": 0,
        "function_unavailable": 1,
        "no_key": 0,
    }
    assert body["truncated"] is False
    pairs = {item["original_task_id"]: item["new_task_id"] for item in body["results"]}
    assert set(pairs) == {first, second}
    for original, new_id in pairs.items():
        assert await admin.finished(new_id) == "success"
        row = await admin.rows("SELECT retried_from FROM taskflow_tasks WHERE id = :i", i=new_id)
        assert row[0]["retried_from"] == original
    retries = await admin.rows("SELECT id FROM taskflow_tasks WHERE source = 'retry'")
    assert len(retries) == 2  # the repeated id was retried once


@pytest.mark.parametrize(
    "body",
    [None, {}, {"task_ids": "abc"}, {"task_ids": [1, 2]}, {"ids": ["a"]}, [1, 2]],
    ids=["no-body", "empty", "string", "ints", "wrong-key", "list"],
)
async def test_bulk_retry_bad_body_is_422(admin: Admin, body: Any) -> None:
    response = await admin.client.post("/tasks/bulk-retry", json=body)
    assert response.status_code == 422, response.text


async def test_bulk_retry_caps_the_list(admin: Admin) -> None:
    ids = [new_task_id() for _ in range(replay_module.MAX_BULK + 1)]
    response = await admin.client.post("/tasks/bulk-retry", json={"task_ids": ids})
    assert response.status_code == 422
    assert "1000" in response.text
    allowed = await admin.client.post("/tasks/bulk-retry", json={"task_ids": ids[:-1]})
    assert allowed.status_code == 200
    assert allowed.json()["skipped"] == replay_module.MAX_BULK


# -- POST /tasks/retry-failed ---------------------------------------------------------------


async def test_retry_failed_honours_the_window_and_function(admin: Admin) -> None:
    now = datetime.now(timezone.utc)
    rows = {
        "failed_30m": task_row("quick_job", created_at=now - timedelta(minutes=30)),
        "interrupted_10m": task_row(
            "quick_job", status="interrupted", created_at=now - timedelta(minutes=10)
        ),
        "failed_2h": task_row("quick_job", created_at=now - timedelta(hours=2)),
        "failed_3d": task_row("quick_job", created_at=now - timedelta(days=3)),
        "success_5m": task_row(
            "quick_job", status="success", created_at=now - timedelta(minutes=5)
        ),
        "charge_20m": task_row("billing.charge", created_at=now - timedelta(minutes=20), args=[5]),
        "orphan_5m": task_row("app.jobs:removed_job", created_at=now - timedelta(minutes=5)),
    }
    await admin.insert_rows(list(rows.values()))
    ids = {name: row["id"] for name, row in rows.items()}

    async def replay(**params: Any) -> dict[str, Any]:
        response = await admin.client.post("/tasks/retry-failed", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert body["dispatched"] == len(body["results"])
        assert body["skipped"] == sum(body["skipped_by_reason"].values())
        assert body["limit"] == replay_module.MAX_REPLAY_DISPATCH
        return body

    def originals(body: dict[str, Any]) -> set[str]:
        return {item["original_task_id"] for item in body["results"]}

    assert (await replay(since="0m"))["dispatched"] == 0
    body = await replay(since="15m")
    assert originals(body) == {ids["interrupted_10m"]}
    assert body["skipped_by_reason"]["function_unavailable"] == 1  # the orphan
    assert body["skipped"] == 1
    # What a call retried is skipped by the next: it has a retry already.
    body = await replay(since="1h", func_name="quick_job")
    assert originals(body) == {ids["failed_30m"]}
    assert body["skipped_by_reason"]["already_retried"] == 1
    body = await replay(since="1d")
    assert originals(body) == {ids["charge_20m"], ids["failed_2h"]}
    assert body["skipped_by_reason"] == {
        "not_found": 0,
        "duplicate": 0,
        "not_retryable": 0,
        "already_retried": 2,
        "function_unavailable": 1,
        "no_key": 0,
    }
    body = await replay(since="all", func_name="quick_job")
    assert originals(body) == {ids["failed_3d"]}

    async def all_retries_done() -> bool:
        rows = await admin.rows(
            "SELECT status, COUNT(*) AS n FROM taskflow_tasks WHERE source = 'retry'"
            " GROUP BY status"
        )
        return {row["status"]: row["n"] for row in rows} == {"success": 5}

    await eventually(all_retries_done)
    assert ("billing.charge", (5,), {}) in admin.calls
    assert (await replay(since="all"))["dispatched"] == 0  # every chain ended in a success


async def test_retry_failed_replays_each_chain_once(admin: Admin) -> None:
    """A chain of failed retries is retried from its newest attempt, and only once."""
    now = datetime.now(timezone.utc)
    root = task_row("quick_job", created_at=now - timedelta(minutes=50))
    first = task_row(
        "quick_job", created_at=now - timedelta(minutes=40), source="retry", retried_from=root["id"]
    )
    second = task_row(
        "quick_job",
        status="interrupted",
        created_at=now - timedelta(minutes=30),
        source="retry",
        retried_from=first["id"],
    )
    # Two retries of one original made by hand: only the newer is replayed.
    forked = task_row("quick_job", created_at=now - timedelta(minutes=45))
    older_fork = task_row(
        "quick_job",
        created_at=now - timedelta(minutes=35),
        source="retry",
        retried_from=forked["id"],
    )
    newer_fork = task_row(
        "quick_job",
        created_at=now - timedelta(minutes=25),
        source="retry",
        retried_from=forked["id"],
    )
    # A chain whose newest attempt is still pending is left alone.
    waiting = task_row("quick_job", created_at=now - timedelta(minutes=20))
    pending = task_row(
        "quick_job",
        status="pending",
        created_at=now - timedelta(minutes=15),
        source="retry",
        retried_from=waiting["id"],
        run_at=now + timedelta(days=1),
    )
    await admin.insert_rows([root, first, second, forked, older_fork, newer_fork, waiting, pending])

    response = await admin.client.post("/tasks/retry-failed", params={"since": "1h"})
    assert response.status_code == 200, response.text
    body = response.json()
    replayed = {item["original_task_id"] for item in body["results"]}
    assert replayed == {second["id"], newer_fork["id"]}
    # root, first (retried), forked (retried), older_fork (same original), waiting (pending retry)
    assert body["skipped_by_reason"]["already_retried"] == 5
    assert (body["dispatched"], body["skipped"], body["capped"]) == (2, 5, False)

    # Called again, no chain that has a retry in flight is retried a second time.
    # (The hand-made older fork is a failure nothing retried: it counts as a chain
    # of its own once the newer fork is skipped.)
    again = (await admin.client.post("/tasks/retry-failed", params={"since": "1h"})).json()
    again_replayed = {item["original_task_id"] for item in again["results"]}
    assert again_replayed == {older_fork["id"]}
    assert again["skipped_by_reason"]["already_retried"] == 6


@pytest.mark.parametrize(
    "since", ["6", "h", "1.5h", "-1h", "6H", "6w", "", " 6h", "all ", "ALL", "6hh", "\uff11h"]
)
async def test_retry_failed_rejects_a_bad_window(admin: Admin, since: str) -> None:
    await admin.insert_rows([task_row("quick_job")])
    response = await admin.client.post("/tasks/retry-failed", params={"since": since})
    assert response.status_code == 400, response.text
    assert "since" in response.json()["detail"]
    assert await admin.rows("SELECT id FROM taskflow_tasks WHERE source = 'retry'") == []


async def test_retry_failed_with_a_huge_window_means_everything(admin: Admin) -> None:
    old = task_row("quick_job", created_at=datetime(2001, 1, 1, tzinfo=timezone.utc))
    await admin.insert_rows([old])
    response = await admin.client.post("/tasks/retry-failed", params={"since": "9" * 30 + "d"})
    assert response.status_code == 200
    assert response.json()["dispatched"] == 1


async def test_replay_stops_at_its_cap(admin: Admin, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay_module, "MAX_REPLAY_DISPATCH", 5)
    monkeypatch.setattr(replay_module, "RETRY_BATCH", 2)
    start = datetime.now(timezone.utc) - timedelta(minutes=30)
    rows = [task_row("quick_job", created_at=start + timedelta(seconds=i)) for i in range(8)]
    await admin.insert_rows(rows)

    body = (await admin.client.post("/tasks/retry-failed", params={"since": "1h"})).json()
    assert (body["dispatched"], body["skipped"], body["capped"]) == (5, 0, True)
    assert body["limit"] == 5
    # Newest first: the five most recent failures were replayed.
    newest = {row["id"] for row in rows[-5:]}
    assert {item["original_task_id"] for item in body["results"]} == newest

    # The next call goes on with the rest: what was retried is skipped.
    body = (await admin.client.post("/tasks/retry-failed", params={"since": "1h"})).json()
    assert (body["dispatched"], body["skipped"], body["capped"]) == (3, 5, False)
    assert {item["original_task_id"] for item in body["results"]} == {r["id"] for r in rows[:3]}


async def test_replay_stops_at_its_scan_cap(admin: Admin, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay_module, "MAX_REPLAY_SCAN", 4)
    monkeypatch.setattr(replay_module, "RETRY_BATCH", 3)
    start = datetime.now(timezone.utc) - timedelta(minutes=30)
    rows = [task_row("removed_job", created_at=start + timedelta(seconds=i)) for i in range(6)]
    await admin.insert_rows(rows)
    body = (await admin.client.post("/tasks/retry-failed", params={"since": "1h"})).json()
    assert (body["dispatched"], body["skipped"], body["capped"]) == (0, 4, True)
    assert body["skipped_by_reason"]["function_unavailable"] == 4


async def test_large_replay_is_bounded(admin: Admin, monkeypatch: pytest.MonkeyPatch) -> None:
    count = 3000
    start = datetime.now(timezone.utc) - timedelta(hours=1)
    rows = [
        task_row("quick_job", created_at=start + timedelta(milliseconds=i), args=[i])
        for i in range(count)
    ]
    for offset in range(0, count, 1000):
        await admin.insert_rows(rows[offset : offset + 1000])

    repository = admin.manager.repository
    inserted_batches: list[int] = []
    pages: list[int] = []
    insert_retries = repository.insert_retries
    replay_candidates = repository.replay_candidates

    async def spy_insert(copies: Any, *, now: datetime) -> Any:
        inserted_batches.append(len(copies))
        return await insert_retries(copies, now=now)

    async def spy_candidates(query: Any) -> Any:
        page = await replay_candidates(query)
        pages.append(len(page))
        return page

    monkeypatch.setattr(repository, "insert_retries", spy_insert)
    monkeypatch.setattr(repository, "replay_candidates", spy_candidates)

    peak = 0
    sampling = True

    async def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, len(asyncio.all_tasks()))
            await asyncio.sleep(0.002)

    sampler = asyncio.create_task(sample())
    try:
        # One call creates at most MAX_REPLAY_DISPATCH retries; each next call
        # skips what the earlier ones retried and goes on with the rest.
        reports = []
        for _ in range(4):
            response = await admin.client.post("/tasks/retry-failed", params={"since": "all"})
            assert response.status_code == 200, response.text
            reports.append(response.json())
        cap = replay_module.MAX_REPLAY_DISPATCH
        assert [r["dispatched"] for r in reports] == [cap, cap, count - 2 * cap, 0]
        assert [r["capped"] for r in reports] == [True, True, False, False]
        assert [r["skipped"] for r in reports] == [0, cap, 2 * cap, count]
        assert len(reports[0]["results"]) == replay_module.MAX_RESULTS

        async def all_ran() -> bool:
            done = await admin.rows(
                "SELECT COUNT(*) AS n FROM taskflow_tasks"
                " WHERE source = 'retry' AND status = 'success'"
            )
            return bool(done[0]["n"] == count)

        await eventually(all_ran, timeout=90)
    finally:
        sampling = False
        await sampler
    assert sum(inserted_batches) == count
    assert max(inserted_batches) <= replay_module.RETRY_BATCH
    assert len(inserted_batches) >= count // replay_module.RETRY_BATCH
    assert max(pages) <= replay_module.RETRY_BATCH
    # Never a coroutine per retry: the dispatcher's own bound holds throughout.
    assert peak <= MAX_ADOPTED + 50, peak
    replayed = await admin.rows(
        "SELECT COUNT(DISTINCT retried_from) AS n FROM taskflow_tasks WHERE source = 'retry'"
    )
    assert replayed[0]["n"] == count


# -- GET /tasks/audit -------------------------------------------------------------------------


async def test_every_state_change_is_audited(admin: Admin) -> None:
    failed = await admin.failed_task("flaky_job", 1, {})
    await admin.failed_task("quick_job")  # for retry-failed: `failed` is retried before it
    blocker = await admin.manager.enqueue(admin.jobs["blocking_job"])
    await eventually(lambda: _is(admin, blocker, "running"))
    await eventually(lambda: admin.manager.list_schedules())

    steps = [
        ("post", f"/tasks/{blocker}/cancel", {}),
        ("post", f"/tasks/{failed}/retry", {}),
        ("post", "/tasks/bulk-retry", {"json": {"task_ids": [failed]}}),
        ("post", "/tasks/retry-failed", {"params": {"since": "1h"}}),
        ("delete", "/tasks/history", {"params": {"value": 30, "unit": "day"}}),
        ("post", "/tasks/schedules/hourly_report/pause", {}),
        ("post", "/tasks/schedules/hourly_report/resume", {}),
    ]
    for method, url, options in steps:
        response = await admin.client.request(method.upper(), url, **options)
        assert response.status_code == 200, (url, response.text)
    await admin.manager.record_audit("login", actor="bob", detail={"ip": "10.0.0.1"})

    entries = await admin.audit()
    assert [e["action"] for e in entries] == [
        "login",
        "schedule_resume",
        "schedule_pause",
        "delete_history",
        "retry_failed",
        "bulk_retry",
        "retry",
        "cancel",
    ]
    assert {e["actor"] for e in entries[1:]} == {"anonymous"}
    assert entries[0]["actor"] == "bob" and entries[0]["detail"] == {"ip": "10.0.0.1"}
    by_action = {e["action"]: e for e in entries}
    assert by_action["cancel"]["task_id"] == blocker
    assert by_action["retry"]["task_id"] == failed
    assert by_action["retry"]["detail"]["new_task_id"]
    assert by_action["bulk_retry"]["detail"] == {
        "dispatched": 1,
        "skipped": 0,
        "task_ids": [failed],
    }
    assert by_action["retry_failed"]["detail"]["since"] == "1h"
    assert by_action["retry_failed"]["detail"]["dispatched"] >= 1
    assert by_action["delete_history"]["detail"] == {"value": 30, "unit": "day", "deleted": 0}
    assert by_action["schedule_pause"]["detail"] == {"schedule": "hourly_report"}
    stamps = [datetime.fromisoformat(e["timestamp"]) for e in entries]
    assert stamps == sorted(stamps, reverse=True)
    assert all(stamp.utcoffset() == timedelta(0) for stamp in stamps)

    stored = await admin.rows("SELECT action, actor FROM taskflow_audit ORDER BY id")
    assert [row["action"] for row in stored] == [e["action"] for e in reversed(entries)]


async def test_audit_pages_newest_first(admin: Admin) -> None:
    for n in range(7):
        await admin.manager.record_audit("note", actor=f"user{n}", detail={"n": n})

    seen: list[int] = []
    sizes: list[int] = []
    params: dict[str, Any] = {"limit": 3}
    for _ in range(10):
        response = await admin.client.get("/tasks/audit", params=params)
        assert response.status_code == 200
        page = response.json()
        seen += [entry["detail"]["n"] for entry in page]
        sizes.append(len(page))
        cursor = response.headers.get("X-Next-Cursor")
        if cursor is None:
            break
        assert 'rel="next"' in response.headers["Link"]
        params = {"limit": 3, "before": cursor}
    assert seen == [6, 5, 4, 3, 2, 1, 0]
    assert sizes == [3, 3, 1]
    for bad in ({"limit": 0}, {"limit": 501}, {"before": 0}, {"before": "x"}):
        assert (await admin.client.get("/tasks/audit", params=bad)).status_code == 422


async def test_record_audit_checks_and_keeps_its_input(admin: Admin) -> None:
    with pytest.raises(ValueError, match="32 characters"):
        await admin.manager.record_audit("x" * 33, actor="bob")
    with pytest.raises(ValueError):
        await admin.manager.record_audit("", actor="bob")
    with pytest.raises(ValueError, match="task_id"):
        await admin.manager.record_audit("retry", actor="bob", task_id="x" * 37)
    with pytest.raises(ValueError, match="limit"):
        await admin.manager.list_audit(limit=0)
    assert await admin.manager.list_audit() == []  # nothing invalid was stored
    entry = await admin.manager.record_audit(
        "logout", actor="b" * 300, detail={"at": datetime(2026, 1, 1, tzinfo=timezone.utc)}
    )
    assert entry.actor == "b" * 255
    assert entry.detail == {"at": "2026-01-01 00:00:00+00:00"}
    assert (await admin.manager.list_audit(limit=1))[0].entry_id == entry.entry_id


class NamedAccess:
    """A signed-in admin named alice; cross-site changes refused as by OpenAccess."""

    async def viewer(self, request: Request) -> Actor:
        return Actor("alice")

    async def operator(self, request: Request) -> Actor:
        if not is_same_origin(request):
            raise HTTPException(403, "Cross-site request refused")
        return Actor("alice")


async def test_the_audit_names_the_signed_in_actor(database_url: str) -> None:
    manager = TaskManager(database_url=database_url)
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    jobs = register_jobs(manager, calls, {"quick_job"}, asyncio.Event())
    app = FastAPI()
    access = NamedAccess()
    app.include_router(create_schedule_router(manager, access=access))
    app.include_router(create_router(manager, access=access))
    await manager.startup()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            failed = await manager.enqueue(jobs["quick_job"])
            await manager.drain()
            assert (await client.post(f"/tasks/{failed}/retry")).status_code == 200
            await eventually(lambda: manager.list_schedules())
            response = await client.post("/tasks/schedules/hourly_report/pause")
            assert response.status_code == 200
            entries = (await client.get("/tasks/audit")).json()
            assert [(e["action"], e["actor"]) for e in entries] == [
                ("schedule_pause", "alice"),
                ("retry", "alice"),
            ]
            await manager.drain()
    finally:
        await manager.shutdown()


# -- GET /tasks/instances, /tasks/functions ----------------------------------------------------


async def test_instances_are_the_live_ones_with_running_counts(admin: Admin) -> None:
    now = datetime.now(timezone.utc)
    peer = "peer-host:4242:abcd"

    def instance(
        instance_id: str, heartbeat: datetime, stopped: datetime | None = None
    ) -> dict[str, Any]:
        return {
            "id": instance_id,
            "hostname": instance_id.split(":")[0],
            "pid": 4242,
            "started_at": now - timedelta(hours=1),
            "heartbeat_at": heartbeat,
            "stopped_at": stopped,
            "version": "9.9.9",
        }

    async with admin.raw.begin() as conn:
        await conn.execute(
            insert(instances_table),
            [
                instance(peer, now),
                instance("dead-host:1:dead", now - timedelta(hours=1)),
                instance("gone-host:2:gone", now, stopped=now),
            ],
        )
    lease = now + timedelta(hours=1)
    await admin.insert_rows(
        [
            task_row("quick_job", status="running", owner=peer, lease_expires_at=lease)
            for _ in range(2)
        ]
        + [task_row("quick_job", status="pending", owner=peer, lease_expires_at=lease)]
    )
    blocker = await admin.manager.enqueue(admin.jobs["blocking_job"])
    await eventually(lambda: _is(admin, blocker, "running"))

    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = admin.manager.repository.engine  # type: ignore[attr-defined]
    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        response = await admin.client.get("/tasks/instances")
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert response.status_code == 200
    listed = {item["instance_id"]: item for item in response.json()}
    assert set(listed) == {admin.manager.instance_id, peer}
    assert listed[peer]["running"] == 2
    assert listed[peer]["hostname"] == "peer-host" and listed[peer]["version"] == "9.9.9"
    assert listed[peer]["pid"] == 4242
    mine = listed[admin.manager.instance_id]
    assert mine["running"] == 1
    assert datetime.fromisoformat(mine["heartbeat_at"]) <= datetime.now(timezone.utc)
    # One query for every instance and its count, not one per instance.
    assert len([s for s in statements if "taskflow_instances" in s]) == 1
    admin.gate.set()


async def test_functions_lists_the_registry(admin: Admin) -> None:
    response = await admin.client.get("/tasks/functions")
    assert response.status_code == 200
    listed = {item["name"]: item for item in response.json()}
    assert list(listed) == sorted(listed)
    assert set(listed) == {
        "billing.charge",
        "blocking_job",
        "flaky_job",
        "hourly_report",
        "quick_job",
    }
    assert listed["flaky_job"] == {
        "name": "flaky_job",
        "retries": 2,
        "delay": 0.0,
        "backoff": 1.0,
        "persist": False,
        "requeue_on_interrupt": False,
        "eager": False,
        "priority": 4,
        "executor": "async",
        "timeout": None,
        "max_delay": None,
        "jitter": None,
        "retry_on": None,
        "dont_retry_on": [],
    }
    charge = listed["billing.charge"]
    assert (charge["retries"], charge["executor"], charge["timeout"]) == (1, "thread", 30)
    assert (charge["max_delay"], charge["jitter"]) == (60.0, "equal")
    assert charge["retry_on"] == ["RuntimeError", "ConnectionError"]
    assert charge["dont_retry_on"] == [f"{__name__}.CardExpiredError"]


# -- routing, OpenAPI, cross-site ---------------------------------------------------------------


async def test_fixed_paths_are_not_taken_for_task_ids(admin: Admin) -> None:
    for path in ("/tasks/audit", "/tasks/instances", "/tasks/functions"):
        response = await admin.client.get(path)
        assert response.status_code == 200, path
        assert isinstance(response.json(), list)
    for path in ("/tasks/bulk-retry", "/tasks/retry-failed"):
        assert (await admin.client.get(path)).status_code in (404, 405)


async def test_openapi_documents_the_admin_routes(admin: Admin) -> None:
    schema = (await admin.client.get("/openapi.json")).json()
    paths = schema["paths"]
    components = schema["components"]["schemas"]

    def ok(path: str, method: str) -> dict[str, Any]:
        result: dict[str, Any] = paths[path][method]["responses"]["200"]["content"][
            "application/json"
        ]["schema"]
        return result

    assert ok("/tasks/{task_id}/retry", "post")["$ref"].endswith("/RetryOut")
    assert {"404", "400", "409"} <= set(paths["/tasks/{task_id}/retry"]["post"]["responses"])
    assert ok("/tasks/bulk-retry", "post")["$ref"].endswith("/RetryReportOut")
    body = paths["/tasks/bulk-retry"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"].endswith("/BulkRetryIn")
    assert ok("/tasks/retry-failed", "post")["$ref"].endswith("/RetryReportOut")
    parameters = {p["name"] for p in paths["/tasks/retry-failed"]["post"]["parameters"]}
    assert {"since", "func_name"} <= parameters
    for path, model in (
        ("/tasks/audit", "AuditOut"),
        ("/tasks/instances", "InstanceOut"),
        ("/tasks/functions", "FunctionOut"),
    ):
        listing = ok(path, "get")
        assert listing["type"] == "array" and listing["items"]["$ref"].endswith(f"/{model}")
    assert set(components["RetryReportOut"]["properties"]) >= {
        "dispatched",
        "skipped",
        "results",
        "truncated",
        "capped",
    }
    assert set(components["AuditOut"]["properties"]) >= {
        "entry_id",
        "action",
        "task_id",
        "actor",
        "timestamp",
        "detail",
    }
    assert "running" in components["InstanceOut"]["properties"]
    for path in ("/tasks/{task_id}/retry", "/tasks/bulk-retry", "/tasks/retry-failed"):
        assert paths[path]["post"]["tags"] == ["tasks"]


@pytest.mark.parametrize(
    "headers",
    [{"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}],
    ids=["sec-fetch-site", "origin"],
)
async def test_cross_site_changes_are_refused(admin: Admin, headers: dict[str, str]) -> None:
    failed = await admin.failed_task("flaky_job", 1, {})
    await eventually(lambda: admin.manager.list_schedules())
    attempts = [
        ("POST", f"/tasks/{failed}/retry", {}),
        ("POST", "/tasks/bulk-retry", {"json": {"task_ids": [failed]}}),
        ("POST", "/tasks/retry-failed", {"params": {"since": "all"}}),
        ("POST", f"/tasks/{failed}/cancel", {}),
        ("DELETE", "/tasks/history", {"params": {"value": 1, "unit": "min"}}),
        ("POST", "/tasks/schedules/hourly_report/pause", {}),
    ]
    for method, url, options in attempts:
        response = await admin.client.request(method, url, headers=headers, **options)
        assert response.status_code == 403, (url, response.status_code)
    assert await admin.rows("SELECT id FROM taskflow_tasks WHERE source = 'retry'") == []
    async with admin.raw.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(audit_table)) == 0
    assert await admin.status(failed) == "failed"
    schedules = await admin.manager.list_schedules()
    assert not schedules[0].paused

    same_site = {"Sec-Fetch-Site": "same-origin", "Origin": "http://test"}
    response = await admin.client.post(f"/tasks/{failed}/retry", headers=same_site)
    assert response.status_code == 200
    assert await admin.finished(response.json()["task_id"]) == "success"
