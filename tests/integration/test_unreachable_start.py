"""Starting and stopping while the database is away: start not-ready, stop in bounded time.

The database is reached through a TCP proxy (``tests/tcp_proxy.py``) that the
test cuts: connections are reset, new ones refused, as in a failover or a
network partition.  PostgreSQL and MariaDB only: a SQLite file has no
connection to cut.

In real uvicorn processes (``tests/apps/lifecycle_app.py``), where only they
show it:

* an instance started while its database is unreachable starts, answers
  ``GET /ready`` with 503 and the reason, answers requests that add a task
  with 503 after ``acknowledge_timeout`` (no task created), logs the outage
  once, and once the database is back reports ready, registers itself and
  runs new tasks;
* SIGTERM during an outage while an ``await enqueue()`` waits for its commit:
  the request gets 503 and the process exits in bounded time (uvicorn waits
  for open requests before it runs the app's shutdown, so an unbounded wait
  hung the stop for the whole outage).

In process: ``enqueue()`` raises ``CommitTimeoutError`` after
``acknowledge_timeout`` and its task never runs; with
``acknowledge="buffered"`` tasks accepted before the first connection are
written and run once it is made, and a stop before it is prompt; readiness
follows a later outage; a server that accepts connections and never
answers holds the start only for a bounded time; SQLite still fails its
start on an error.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from tcp_proxy import TcpProxy, through_proxy, upstream_of

import taskflow.facade.lifecycle as lifecycle_module
from taskflow import (
    CommitTimeoutError,
    DatabaseUnavailableError,
    ManagedBackgroundTasks,
    TaskManager,
)
from tests.processes import UvicornInstance, closed_at_exit, sql_rows, start_uvicorn

SERVER_BACKENDS = [
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
]
APP = "tests.apps.lifecycle_app:app"
ACK_TIMEOUT = 1.5
OUT_FOR = 3.0  # seconds the database stays away after the instance has started
READY_WITHIN = 10.0  # after the restore (retries back off to at most 5 s)
# SIGTERM mid-outage: the request's wait (acknowledge_timeout, plus at most as
# long again for a write attempt under way), the grace, and the writer's 10 s
# to flush at shutdown; before the bound, the stop waited for the outage.
STOP_WITHIN = 2 * ACK_TIMEOUT + 1.0 + 10.0 + 8.0


@pytest.fixture
def proxy(schema_db_url: str) -> Iterator[TcpProxy]:
    tcp_proxy = TcpProxy(*upstream_of(schema_db_url))
    tcp_proxy.start()
    try:
        yield tcp_proxy
    finally:
        tcp_proxy.close()


@pytest.fixture
def launch(proxy: TcpProxy, schema_db_url: str, tmp_path: Path, journal_dir: Path) -> Iterator[Any]:
    """Start lifecycle_app on the database through the proxy, without waiting for it."""

    def start(name: str) -> UvicornInstance:
        env = {
            "TASKFLOW_DATABASE_URL": through_proxy(schema_db_url, proxy.port),
            "TASKFLOW_LEASE_SECONDS": "2",
            "TASKFLOW_POLL_INTERVAL": "0.2",
            "TASKFLOW_SHUTDOWN_GRACE": "1",
            "TASKFLOW_ACKNOWLEDGE_TIMEOUT": str(ACK_TIMEOUT),
            "TASKFLOW_INSTANCE_NAME": name,
            "JOURNAL_DIR": str(journal_dir),
        }
        instance = start_uvicorn(APP, name, env, tmp_path, wait=False)
        started.append(instance)
        return instance

    with closed_at_exit() as started:
        yield start


def ran(journal_dir: Path) -> list[str]:
    """Ids of the tasks that ran, from every journal."""
    return [
        line.split()[0]
        for path in sorted(journal_dir.glob("*.journal"))
        for line in path.read_text().splitlines()
    ]


async def wait_for(probe: Any, timeout: float, what: str) -> float:
    """Poll ``probe`` (blocking, run in a thread) until true; returns the seconds it took."""
    began = time.monotonic()
    while not await asyncio.to_thread(probe):
        if time.monotonic() - began > timeout:
            pytest.fail(f"{what}: not within {timeout:g}s")
        await asyncio.sleep(0.1)
    return time.monotonic() - began


def statuses(url: str) -> dict[str, str]:
    return {
        row["id"]: row["status"] for row in sql_rows(url, "SELECT id, status FROM taskflow_tasks")
    }


# -- in real processes ---------------------------------------------------------------


@pytest.mark.subprocess
@pytest.mark.timeout(90)
@pytest.mark.parametrize("backend_name", SERVER_BACKENDS)
async def test_an_instance_starts_without_its_database_and_connects_when_it_returns(
    proxy: TcpProxy, launch: Any, schema_db_url: str, journal_dir: Path
) -> None:
    proxy.cut()
    instance: UvicornInstance = launch("away")
    began = time.monotonic()
    await asyncio.to_thread(instance.wait_ready, 30.0, "/ready")
    assert time.monotonic() - began < 20, "the start waited for the database"
    assert proxy.refused >= 1, "the instance never tried the database"

    async with httpx.AsyncClient(base_url=instance.base, timeout=30) as client:
        ready = await client.get("/ready")
        assert ready.status_code == 503, ready.text
        assert ready.json()["ready"] is False
        assert "not connected to the database" in ready.json()["reason"], ready.text

        asked = time.monotonic()
        refused = await asyncio.gather(client.post("/add"), client.post("/enqueue"))
        waited = time.monotonic() - asked
        assert [r.status_code for r in refused] == [503, 503], [r.text for r in refused]
        assert all(r.headers.get("retry-after") == "5" for r in refused)
        assert all("not created" in r.json()["detail"] for r in refused), refused[0].text
        assert ACK_TIMEOUT - 0.1 <= waited < ACK_TIMEOUT + 3, waited

        await asyncio.sleep(max(0.0, OUT_FOR - (time.monotonic() - began)))
        assert (await client.get("/ready")).status_code == 503
        proxy.restore()
        took = await wait_for(
            lambda: httpx.get(f"{instance.base}/ready").status_code == 200,
            READY_WITHIN,
            "ready after the database came back",
        )
        print(f"ready {took:.2f}s after the restore")
        assert (await client.get("/ready")).json() == {"ready": True, "reason": None}

        added = [(await client.post(route)).json()["task_id"] for route in ("/add", "/enqueue")]

    await wait_for(lambda: sorted(ran(journal_dir)) == sorted(added), 15, "the new tasks ran")
    await wait_for(
        lambda: all(statuses(schema_db_url).get(i) == "success" for i in added), 10, "successes"
    )
    rows = await asyncio.to_thread(statuses, schema_db_url)
    # The refused tasks were never written, or written cancelled; none ran.
    assert {status for task_id, status in rows.items() if task_id not in added} <= {"cancelled"}
    assert sorted(ran(journal_dir)) == sorted(added)
    pids = await asyncio.to_thread(sql_rows, schema_db_url, "SELECT pid FROM taskflow_instances")
    assert instance.pid in {row["pid"] for row in pids}, "the instance never registered"
    log = instance.log_text()
    assert log.count("cannot connect to the database") == 1, log
    assert "reached the database after" in log, log
    assert await asyncio.to_thread(instance.signal_and_wait, signal.SIGTERM, 20)


@pytest.mark.subprocess
@pytest.mark.timeout(90)
@pytest.mark.parametrize("backend_name", SERVER_BACKENDS)
async def test_sigterm_during_an_outage_with_an_awaited_enqueue_exits_in_bounded_time(
    proxy: TcpProxy, launch: Any, schema_db_url: str, journal_dir: Path
) -> None:
    instance: UvicornInstance = launch("stopping")
    await asyncio.to_thread(instance.wait_ready, 30.0, "/ready")
    async with httpx.AsyncClient(base_url=instance.base, timeout=60) as client:
        assert (await client.post("/enqueue")).status_code == 200  # connected and working
        await wait_for(lambda: len(ran(journal_dir)) == 1, 10, "the first task ran")
        await wait_for(lambda: "success" in statuses(schema_db_url).values(), 10, "its success")
        assert proxy.cut() >= 1, "no connection open through the proxy"
        in_flight = asyncio.ensure_future(client.post("/enqueue"))
        await asyncio.sleep(0.5)
        assert not in_flight.done(), "the enqueue did not wait for its commit"
        began = time.monotonic()
        exited = await asyncio.to_thread(instance.signal_and_wait, signal.SIGTERM, STOP_WITHIN)
        stopped_in = time.monotonic() - began
        assert exited, f"the instance did not exit within {STOP_WITHIN:g}s of SIGTERM"
        print(f"exited {stopped_in:.2f}s after SIGTERM")
        response = await asyncio.wait_for(in_flight, 5)
    assert response.status_code == 503, response.text
    assert "not created" in response.json()["detail"], response.text
    # A graceful stop: uvicorn ran the app's shutdown, then re-raised the signal.
    assert "Application shutdown complete" in instance.log_text(), instance.log_text()
    proxy.restore()
    rows = await asyncio.to_thread(statuses, schema_db_url)
    first = ran(journal_dir)
    assert len(first) == 1 and rows[first[0]] == "success", (first, rows)
    # The refused enqueue's task was never written, or written cancelled.
    assert {status for task_id, status in rows.items() if task_id not in first} <= {"cancelled"}


# -- in process ------------------------------------------------------------------------


NOTED: list[str] = []


async def noted(tag: str) -> None:
    NOTED.append(tag)


@asynccontextmanager
async def serving(manager: TaskManager) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    manager.init_app(app)
    app.include_router(manager.readiness_router())
    get_tasks = Depends(manager.get_tasks)

    @app.post("/add/{tag}")
    async def add(tag: str, tasks: ManagedBackgroundTasks = get_tasks) -> Any:
        return {"task_id": tasks.add_task(noted, tag)}

    @app.post("/add-keyed/{tag}")
    async def add_keyed(tag: str, tasks: ManagedBackgroundTasks = get_tasks) -> Any:
        return {"task_id": tasks.add_task(noted, tag, idempotency_key=f"key-{tag}")}

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def manager_through(proxy: TcpProxy, url: str, **options: Any) -> TaskManager:
    manager = TaskManager(
        database_url=through_proxy(url, proxy.port),
        lease_seconds=2.0,
        poll_interval=0.2,
        shutdown_grace=1.0,
        **options,
    )
    manager.task(name="noted")(noted)
    return manager


@pytest.fixture(autouse=True)
def _clear_noted() -> None:
    NOTED.clear()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend_name", SERVER_BACKENDS)
async def test_enqueue_during_an_outage_raises_after_acknowledge_timeout(
    proxy: TcpProxy, schema_db_url: str
) -> None:
    manager = manager_through(proxy, schema_db_url, acknowledge_timeout=1.0)
    await manager.startup()
    try:
        await manager.enqueue(noted, "before")
        assert proxy.cut() >= 1
        began = time.monotonic()
        with pytest.raises(CommitTimeoutError, match="not created"):
            await asyncio.wait_for(manager.enqueue(noted, "during"), 10)
        assert time.monotonic() - began < 1.0 + 1.0 + 1.5  # its wait, an attempt's end, slack
        proxy.restore()
        await asyncio.wait_for(manager.flush(), 10)
        await manager.drain()
        await asyncio.sleep(0.5)
    finally:
        proxy.restore()
        await manager.shutdown()
    assert NOTED == ["before"]
    rows = await asyncio.to_thread(
        sql_rows, schema_db_url, "SELECT status, COUNT(*) AS n FROM taskflow_tasks GROUP BY status"
    )
    assert {row["status"] for row in rows} <= {"success", "cancelled"}, rows


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend_name", SERVER_BACKENDS)
async def test_a_keyed_task_during_an_outage_is_refused_at_once_with_503(
    proxy: TcpProxy, schema_db_url: str
) -> None:
    # A keyed task's row is inserted there and then: while the database is
    # away it cannot wait in the buffer, and must not hold the event loop for
    # a connection timeout either.
    manager = manager_through(proxy, schema_db_url, acknowledge_timeout=1.0)
    async with serving(manager) as client:
        assert (await client.post("/add-keyed/before")).status_code == 200
        await manager.drain()
        assert proxy.cut() >= 1
        await wait_for(lambda: not manager.readiness().ready, 10, "not ready")
        began = time.monotonic()
        response = await client.post("/add-keyed/during")
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "5"
        assert "not created" in response.json()["detail"]
        with pytest.raises(DatabaseUnavailableError, match="retry later"):
            await manager.enqueue(noted, "during-enqueue", idempotency_key="key-e")
        assert time.monotonic() - began < 1.0
        proxy.restore()
        await wait_for(lambda: manager.readiness().ready, 15, "ready again")
        assert (await client.post("/add-keyed/after")).status_code == 200
        await manager.drain()
    assert sorted(NOTED) == ["after", "before"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend_name", SERVER_BACKENDS)
async def test_buffered_tasks_accepted_before_the_first_connection_run_after_it(
    proxy: TcpProxy, schema_db_url: str
) -> None:
    proxy.cut()
    manager = manager_through(proxy, schema_db_url, acknowledge="buffered")
    async with serving(manager) as client:
        state = manager.readiness()
        assert not state.ready and state.reason is not None
        assert "not connected to the database" in state.reason
        answered = [await client.post(f"/add/{n}") for n in range(3)]
        assert [r.status_code for r in answered] == [200] * 3, [r.text for r in answered]
        ids = [r.json()["task_id"] for r in answered]
        assert (await client.get("/ready")).status_code == 503
        proxy.restore()
        deadline = time.monotonic() + READY_WITHIN
        while not manager.readiness().ready:
            assert time.monotonic() < deadline, manager.readiness()
            await asyncio.sleep(0.05)
        assert (await client.get("/ready")).status_code == 200
        await asyncio.wait_for(manager.drain(), 10)
    assert sorted(NOTED) == ["0", "1", "2"]
    rows = await asyncio.to_thread(statuses, schema_db_url)
    assert {rows.get(task_id) for task_id in ids} == {"success"}, rows


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend_name", SERVER_BACKENDS)
async def test_readiness_follows_an_outage_after_the_start(
    proxy: TcpProxy, schema_db_url: str
) -> None:
    manager = manager_through(proxy, schema_db_url)
    assert manager.readiness().reason == "taskflow is not started"
    await manager.startup()
    try:
        assert manager.readiness().ready
        proxy.cut()
        deadline = time.monotonic() + 5
        while manager.readiness().ready:  # the next claim (poll_interval 0.2 s) fails
            assert time.monotonic() < deadline, "still ready 5 s into the outage"
            await asyncio.sleep(0.05)
        assert "unreachable" in (manager.readiness().reason or "")
        proxy.restore()
        deadline = time.monotonic() + 5
        while not manager.readiness().ready:
            assert time.monotonic() < deadline, manager.readiness()
            await asyncio.sleep(0.05)
    finally:
        proxy.restore()
        await manager.shutdown()
    assert manager.readiness().reason == "taskflow is not started"


async def test_sqlite_still_fails_its_start_on_an_error(tmp_path: Path) -> None:
    manager = TaskManager(database_url=f"sqlite:///{tmp_path / 'missing' / 'tasks.db'}")
    with pytest.raises(Exception, match="unable to open database file"):
        await asyncio.wait_for(manager.startup(), 10)
    assert not manager.started
    assert manager.readiness().reason == "taskflow is not started"
    # aiosqlite stops the worker thread of a failed connection without waiting
    # for it; let it finish while this loop can still take its reply.
    deadline = time.monotonic() + 5
    while any("_connection_worker_thread" in t.name for t in threading.enumerate()):
        assert time.monotonic() < deadline, "aiosqlite's worker thread did not stop"
        await asyncio.sleep(0.01)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend_name", SERVER_BACKENDS)
async def test_a_stop_before_the_first_connection_is_prompt_and_says_what_it_drops(
    proxy: TcpProxy, schema_db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    proxy.cut()
    manager = manager_through(proxy, schema_db_url, acknowledge="buffered")
    manager.shutdown_grace = 10.0  # not waited for: nothing can have started
    async with serving(manager) as client:
        assert (await client.post("/add/lost")).status_code == 200
        began = time.monotonic()
    stopped_in = time.monotonic() - began
    assert stopped_in < 3.0, f"the stop took {stopped_in:.2f}s"
    assert "writer stopped with 1 writes not committed" in caplog.text
    assert NOTED == []
    proxy.restore()
    assert await asyncio.to_thread(statuses, schema_db_url) == {}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend_name", SERVER_BACKENDS)
async def test_a_server_that_never_answers_holds_the_start_only_for_a_bounded_time(
    proxy: TcpProxy, schema_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connections accepted and never answered (MySQL's handshake then waits for good)."""
    monkeypatch.setattr(lifecycle_module, "OPEN_TIMEOUT_S", 2.0)
    proxy.cut(hold=True)
    manager = manager_through(proxy, schema_db_url)
    began = time.monotonic()
    await asyncio.wait_for(manager.startup(), 20)
    try:
        assert time.monotonic() - began < 5.0, "the start waited for a server that never answers"
        assert "did not answer within 2s" in (manager.readiness().reason or ""), manager.readiness()
        assert proxy.held >= 1
        proxy.restore()
        deadline = time.monotonic() + READY_WITHIN
        while not manager.readiness().ready:
            assert time.monotonic() < deadline, manager.readiness()
            await asyncio.sleep(0.05)
        assert await manager.enqueue(noted, "after")
        await asyncio.wait_for(manager.drain(), 10)
    finally:
        proxy.restore()
        await manager.shutdown()
    assert NOTED == ["after"]
