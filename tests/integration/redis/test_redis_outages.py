"""Redis unreachable: a start without it, refusals with 503, a cut through a TCP proxy."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from taskflow import TaskQuery, TaskStatus
from tests.integration.redis.redis_app import (
    CALLS,
    ROUTES,
    Deployment,
    free_port,
    refusing_app,
    serving,
)
from tests.polling import eventually
from tests.tcp_proxy import TcpProxy, through_proxy, upstream_of

# -- Redis unreachable --------------------------------------------------------------


async def test_a_start_without_redis_is_not_ready_and_refuses_tasks_with_503(
    deployment: Deployment,
) -> None:
    manager = deployment.manager(
        f"redis://127.0.0.1:{free_port()}/0?key_prefix={deployment.prefix}",
        acknowledge_timeout=1.0,
    )
    app = refusing_app(manager)
    began = time.monotonic()
    async with serving(app) as client:
        assert time.monotonic() - began < 5, "the start waited for Redis"
        readiness = manager.readiness()
        assert not readiness.ready
        assert readiness.reason and "Connect" in readiness.reason, readiness
        ready = await client.get("/ready")
        assert ready.status_code == 503, ready.text
        for route in ("depends-async", "plain-sync", "enqueue"):
            began = time.monotonic()
            response = await client.post(f"/{route}/away", headers={"x": route})
            waited = time.monotonic() - began
            assert response.status_code == 503, (route, response.text)
            assert "Retry-After" in response.headers, route
            assert 0.9 <= waited < 5, (route, waited)
        stop_began = time.monotonic()
    assert time.monotonic() - stop_began < 3, "the stop waited for Redis"
    assert CALLS == []
    assert not manager.local_tasks.held


async def test_a_stop_after_a_refused_task_is_prompt(deployment: Deployment) -> None:
    manager = deployment.manager(
        f"redis://127.0.0.1:{free_port()}/0?key_prefix={deployment.prefix}",
        acknowledge_timeout=0.5,
    )
    app = refusing_app(manager)
    async with serving(app) as client:
        assert (await client.post("/depends-async/away")).status_code == 503
        stop_began = time.monotonic()
    assert time.monotonic() - stop_began < 3


async def test_tasks_refused_while_redis_was_away_are_not_created(
    deployment: Deployment,
) -> None:
    """As above, through a cut proxy, then restored: the store shows no task."""
    proxy = TcpProxy(*upstream_of(deployment.server_url))
    proxy.start()
    try:
        proxy.cut()
        proxied = (
            f"{through_proxy(deployment.server_url, proxy.port)}?key_prefix={deployment.prefix}"
        )
        manager = deployment.manager(proxied, acknowledge_timeout=1.0)
        app = refusing_app(manager)
        async with serving(app) as client:
            assert not manager.readiness().ready
            refused = await client.post("/depends-async/away")
            assert refused.status_code == 503, refused.text
            assert proxy.refused >= 1
            proxy.restore()
            await eventually(lambda: asyncio.sleep(0, manager.readiness().ready), timeout=15)
            accepted = await client.post("/depends-async/back")
            assert accepted.status_code == 200, accepted.text
            await manager.drain()
            page = await manager.list_tasks(TaskQuery(limit=100))
        assert [record.task_id for record in page.items] == [accepted.json()["task_id"]]
        assert CALLS == ["back"]
    finally:
        proxy.close()


async def test_tasks_added_during_a_cut_get_503_or_finish(deployment: Deployment) -> None:
    """Requests every 50 ms through a 2 s cut: each gets 503, or its task runs exactly once."""
    proxy = TcpProxy(*upstream_of(deployment.server_url))
    proxy.start()
    try:
        proxied = (
            f"{through_proxy(deployment.server_url, proxy.port)}?key_prefix={deployment.prefix}"
        )
        manager = deployment.manager(proxied, acknowledge_timeout=1.0, lease_seconds=5.0)
        app = refusing_app(manager)
        sent: list[tuple[float, int, str | None]] = []  # (sent at, status, task id)
        async with serving(app) as client:
            assert manager.readiness().ready
            loop = asyncio.get_running_loop()

            async def post(n: int) -> None:
                at = loop.time()
                response = await client.post(f"/{list(ROUTES)[n % len(ROUTES)]}/n{n}")
                assert response.status_code in (200, 503), response.text
                if response.status_code == 503:
                    assert "Retry-After" in response.headers
                sent.append((at, response.status_code, response.json().get("task_id")))

            async def load() -> None:
                posts = []
                for n in range(80):
                    posts.append(asyncio.create_task(post(n)))
                    await asyncio.sleep(0.05)
                await asyncio.gather(*posts)

            loading = asyncio.create_task(load())
            await asyncio.sleep(0.5)
            cut_at = loop.time()
            assert await asyncio.to_thread(proxy.cut) >= 1
            await asyncio.sleep(2.0)
            await asyncio.to_thread(proxy.restore)
            restored_at = loop.time()
            await loading
            await eventually(lambda: asyncio.sleep(0, manager.readiness().ready), timeout=15)
            await asyncio.wait_for(manager.drain(), 20)
            accepted = [task_id for _, code, task_id in sent if code == 200]
            records = {task_id: await manager.get_task(task_id) for task_id in accepted}
            page = await manager.list_tasks(TaskQuery(limit=500))
            unfinished = await manager.list_tasks(
                TaskQuery(status=[TaskStatus.PENDING, TaskStatus.RUNNING], limit=500)
            )
        timeline = " ".join(
            f"{at - restored_at:+.2f}:{code}" for at, code, _ in sorted(sent) if at > cut_at - 0.2
        )
        print(f"\n[redis cut] {Counter(c for _, c, _ in sent)}; around the cut: {timeline}")
        before = [code for at, code, _ in sent if at < cut_at - 0.1]
        assert before and set(before) == {200}
        assert 503 in {code for at, code, _ in sent if cut_at + 0.1 < at < restored_at - 1.1}
        for task_id, record in records.items():
            assert record is not None and record.status is TaskStatus.SUCCESS, (task_id, record)
        assert unfinished.items == []
        # A 503 promises that no task was created: a row whose commit landed while
        # its reply was cut may remain, but cancelled, never run.
        orphans = {r.task_id: r for r in page.items if r.task_id not in set(accepted)}
        for orphan in orphans.values():
            assert orphan.status is TaskStatus.CANCELLED, orphan
            assert orphan.error is not None and "not acknowledged" in orphan.error
        assert set(accepted) <= {r.task_id for r in page.items}
        ran = {record.args[0] for record in records.values() if record is not None}
        assert sorted(CALLS) == sorted(ran)  # each accepted task ran once, no other did
    finally:
        proxy.close()
