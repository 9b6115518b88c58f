"""``POST /tasks/retry-failed``: window, function filter, one replay per chain, caps.

On every SQL backend, as an HTTP client (httpx over ASGI) sees it.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from taskflow import replay as replay_module
from taskflow.manager import MAX_ADOPTED
from tests.integration.admin_api.admin_app import Admin, task_row
from tests.polling import eventually


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
