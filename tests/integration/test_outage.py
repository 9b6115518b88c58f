"""A real database outage in the middle of a steady load: nothing lost, nothing run twice.

The manager talks to PostgreSQL / MariaDB through a TCP proxy the test starts
(``tests/tcp_proxy.py``).  Cutting the proxy resets every connection the
manager holds and refuses new ones, which is what a failover, a network
partition or a server restart looks like from the application.  No mocks:
the real writer, pool, drivers and server see the failure.

Checks are made with plain SQL against the server's own port (not the proxy),
and against an in-process record of every execution.

* with responses held until their rows commit (the default): a cut shorter
  than ``acknowledge_timeout`` makes requests wait and then succeed; a
  longer one answers 503, and none of those tasks runs;
* ``acknowledge="buffered"``, a 3 s cut in the middle of a steady load
  (connections refused, or held unanswered): every accepted task is stored
  and ran exactly once;
* a 3 s cut with write_buffer_size=20: ``BackpressureError`` / HTTP 503 once
  the buffer is full, and everything accepted is written after the restore;
* a slow (not failing) database with a busy writer: ``def`` and ``async def``
  routes still accept tasks;
* a COMMIT applied by the server whose reply is lost: the retried batch adds
  no second copy of anything;
* a server that stops answering for 8 s counts as down for backpressure.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from tcp_proxy import TcpProxy

from taskflow import (
    BackpressureError,
    ManagedBackgroundTasks,
    TaskAdmin,
    TaskManager,
    get_task_context,
    task_log,
)
from taskflow.settings import resolve_database_url

SERVER_BACKENDS = [
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
]
CUT_SECONDS = 3.0
DRAIN_TIMEOUT_S = 15.0
TEST_TIMEOUT_S = 40  # each test takes well under 20 s; this only stops a hang
LOG_MARKER = "outage-probe-line"  # each task logs it once; the proxy can spot it on the wire
SHORT_FROM = 10_000  # task numbers from here on are always short tasks


# -- helpers -------------------------------------------------------------------------


def through_proxy(url: str, port: int) -> str:
    """The same database and user, reached through the proxy's port."""
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def upstream_of(url: str) -> tuple[str, int]:
    parsed = make_url(url)
    default = 5432 if parsed.get_backend_name().startswith("postgres") else 3306
    return parsed.host or "127.0.0.1", parsed.port or default


async def rows_direct(url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    """Plain SQL on a fresh connection to the server's own port."""
    engine = create_async_engine(resolve_database_url(url).url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(text(sql), params)
            return [dict(row._mapping) for row in result]
    finally:
        await engine.dispose()


@dataclass
class Executions:
    """What ran, in this process: starts and ends per task id, with monotonic times."""

    starts: Counter[str] = field(default_factory=Counter)
    ends: Counter[str] = field(default_factory=Counter)
    first_start: dict[str, float] = field(default_factory=dict)
    last_end: dict[str, float] = field(default_factory=dict)

    def started(self, task_id: str) -> None:
        self.starts[task_id] += 1
        self.first_start.setdefault(task_id, time.monotonic())

    def ended(self, task_id: str) -> None:
        self.ends[task_id] += 1
        self.last_end[task_id] = time.monotonic()


def pause_for(n: int) -> float:
    """Short tasks, and every 20th one long enough to run across the whole cut."""
    if n % 20 == 0 and n < SHORT_FROM:
        return CUT_SECONDS + 1.5  # a margin for slow first commits on a loaded machine
    return 0.02 + (n % 7) * 0.04


class Outage:
    """One manager behind a proxy, an app with async and sync routes, an execution record."""

    def __init__(
        self,
        direct_url: str,
        *,
        write_buffer_size: int = 10_000,
        acknowledge: str = "buffered",
        acknowledge_timeout: float = 10.0,
    ) -> None:
        self.direct_url = direct_url
        self.proxy = TcpProxy(*upstream_of(direct_url))
        port = self.proxy.start()
        try:
            self.manager = TaskManager(
                database_url=through_proxy(direct_url, port),
                write_buffer_size=write_buffer_size,
                shutdown_grace=2.0,
                acknowledge=acknowledge,  # type: ignore[arg-type]
                acknowledge_timeout=acknowledge_timeout,
            )
        except BaseException:
            self.proxy.close()
            raise
        self.runs = Executions()
        self.app = FastAPI()
        TaskAdmin(self.app, self.manager)
        runs = self.runs

        @self.manager.task()
        async def work(n: int, pause: float) -> int:
            context = get_task_context()
            assert context is not None
            runs.started(context.task_id)
            task_log(f"{LOG_MARKER} {n}")
            await asyncio.sleep(pause)
            runs.ended(context.task_id)
            return n

        self.work = work
        get_tasks = Depends(self.manager.get_tasks)

        @self.app.post("/work/{n}")
        async def enqueue_async(n: int, tasks: ManagedBackgroundTasks = get_tasks) -> Any:
            return {"task_id": tasks.add_task(work, n, pause_for(n))}

        @self.app.post("/work-sync/{n}")
        def enqueue_sync(n: int, tasks: ManagedBackgroundTasks = get_tasks) -> Any:
            return {"task_id": tasks.add_task(work, n, pause_for(n))}

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[httpx.AsyncClient]:
        """The app's lifespan (manager startup/shutdown) around an in-process client.

        Whatever happens, the proxy is restored before the manager shuts down
        (so shutdown does not wait out its flush timeout) and closed after it.
        """
        try:
            async with self.app.router.lifespan_context(self.app):
                transport = httpx.ASGITransport(app=self.app)
                async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                    try:
                        yield client
                    finally:
                        self.proxy.restore()
        finally:
            self.proxy.close()

    def submit(self, n: int) -> str:
        """``manager.submit`` + ``manager.dispatch``: the task id, or BackpressureError."""
        local = self.manager.submit(self.work, (n, pause_for(n)), {})
        assert not isinstance(local, str)
        self.manager.dispatch(local)
        return local.record.task_id

    async def add(self, client: httpx.AsyncClient, n: int) -> str:
        """Add task ``n`` by one of three paths: submit+dispatch, async route, sync route."""
        if n % 3 == 0:
            return self.submit(n)
        route = "/work" if n % 3 == 1 else "/work-sync"
        response = await client.post(f"{route}/{n}")
        assert response.status_code == 200, (n, response.status_code, response.text)
        task_id: str = response.json()["task_id"]
        return task_id

    async def post(self, client: httpx.AsyncClient, n: int) -> httpx.Response:
        """Add task ``n`` through an async or a sync route; the response as it came."""
        return await client.post(f"{('/work', '/work-sync')[n % 2]}/{n}")

    async def drain(self) -> None:
        try:
            await asyncio.wait_for(self.manager.drain(), DRAIN_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise AssertionError(
                f"manager.drain() did not finish within {DRAIN_TIMEOUT_S}s after the database "
                f"came back: {len(self.manager.local_tasks.held)} tasks still held locally"
            ) from None

    async def check_all_ran_once(
        self, ids: list[str], *, check_logs: bool = True, cancelled_strays: bool = False
    ) -> None:
        """Every id is a committed ``success`` row, and ran exactly once.

        With ``cancelled_strays``, rows nobody was given an id for may exist
        if they are ``cancelled`` (withdrawn after a 503).

        With ``check_logs``, each task's one log line is stored exactly once
        (only with the default buffer: with a tiny one the writer drops log
        lines, by design, once twice the buffer is waiting).
        """
        assert len(set(ids)) == len(ids), "add_task returned the same id twice"
        found = {
            row["id"]: row
            for row in await rows_direct(
                self.direct_url,
                "SELECT id, status, attempt, result, owner, lease_expires_at FROM taskflow_tasks",
            )
        }
        missing = [task_id for task_id in ids if task_id not in found]
        assert not missing, (
            f"{len(missing)} of {len(ids)} accepted tasks have no row: {missing[:5]}"
        )
        extra = {
            task_id
            for task_id in set(found) - set(ids)
            if not (cancelled_strays and found[task_id]["status"] == "cancelled")
        }
        assert not extra, f"{len(extra)} rows nobody was given an id for: {sorted(extra)[:5]}"
        by_status = Counter(found[task_id]["status"] for task_id in ids)
        assert by_status == Counter(success=len(ids)), f"statuses after the outage: {by_status}"
        for task_id in ids:
            row = found[task_id]
            assert row["attempt"] == 0, row
            assert row["owner"] is None and row["lease_expires_at"] is None, row
        twice = {tid: n for tid, n in self.runs.starts.items() if n != 1}
        assert not twice, f"tasks started more than once: {twice}"
        not_run = [task_id for task_id in ids if self.runs.ends[task_id] != 1]
        assert not not_run, f"{len(not_run)} accepted tasks did not run to the end once"
        assert set(self.runs.starts) == set(ids), "a task ran that add_task never returned"
        if not check_logs:
            return
        logged = Counter(
            row["task_id"]
            for row in await rows_direct(
                self.direct_url,
                "SELECT task_id FROM taskflow_task_logs WHERE message LIKE :m",
                m=f"{LOG_MARKER}%",
            )
        )
        wrong = {tid: logged[tid] for tid in ids if logged[tid] != 1}
        assert not wrong, (
            f"{len(wrong)} tasks do not have exactly one stored log line (each logged one): "
            f"{dict(list(wrong.items())[:5])}"
        )


async def at(moment: float) -> None:
    """Sleep until ``time.monotonic()`` reaches ``moment``."""
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


async def until(probe: Callable[[], Awaitable[bool] | bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if not isinstance(value, bool):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.01)


def writer_failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "taskflow.writer"
        and ("write failed" in record.getMessage() or "not finished" in record.getMessage())
    ]


# -- the tests -------------------------------------------------------------------------


@pytest.mark.timeout(TEST_TIMEOUT_S)
@pytest.mark.parametrize("mode", ["refuse", "hold"])
@pytest.mark.parametrize("backend_name", SERVER_BACKENDS)
async def test_outage_mid_load_loses_nothing_and_runs_nothing_twice(
    schema_db_url: str, mode: str, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> None:
    """Buffered: 300 tasks over 3 s; the database is cut for 3 s from t=1 s; all run once.

    ``refuse``: new connections are reset during the cut; ``hold``: they get
    no answer until the restore (a server that stopped answering).
    """
    caplog.set_level(logging.WARNING, logger="taskflow")
    # Late in a full run the test process holds every earlier test's objects;
    # a full GC pass over them would stall the loop and be timed as add_task.
    gc.collect()
    gc.freeze()
    request.addfinalizer(gc.unfreeze)
    outage = Outage(schema_db_url)
    total, interval = 300, 0.01
    cut_start = 1.0
    ids: list[str] = []
    added_at: dict[str, float] = {}
    slowest_add_during_cut = 0.0
    marks: dict[str, float] = {}

    async with outage.serve() as client:
        start = time.monotonic()

        async def cutter() -> None:
            await at(start + cut_start)
            marks["cut"] = time.monotonic()
            marks["reset"] = outage.proxy.cut(hold=mode == "hold")
            await asyncio.sleep(CUT_SECONDS)
            marks["restore"] = time.monotonic()  # before restore(): a safe lower bound
            outage.proxy.restore()

        cutting = asyncio.create_task(cutter())
        try:
            for n in range(total):
                await at(start + n * interval)
                before = time.monotonic()
                task_id = await outage.add(client, n)
                after = time.monotonic()
                ids.append(task_id)
                added_at[task_id] = before
                if "cut" in marks and "restore" not in marks:
                    slowest_add_during_cut = max(slowest_add_during_cut, after - before)
        finally:
            await cutting
        # A few more once the database is back.
        for n in range(total, total + 30):
            ids.append(await outage.add(client, n))
        await outage.drain()

        cut_at, restored_at = marks["cut"], marks["restore"]
        during_cut = [tid for tid in ids if cut_at <= added_at.get(tid, 0.0) < restored_at]
        assert len(during_cut) >= 150, f"only {len(during_cut)} tasks were added during the cut"
        assert slowest_add_during_cut < 0.5, (
            f"add_task blocked for {slowest_add_during_cut:.2f}s during the outage"
        )
        # The cut really happened, and the writer saw it and retried.
        assert marks["reset"] >= 1, "the manager had no connection open through the proxy"
        if mode == "refuse":
            assert outage.proxy.refused >= 1, "nothing tried to reconnect during the cut"
            assert writer_failures(caplog), "the writer never saw a failed write"
        else:
            assert outage.proxy.held >= 1, "nothing tried to reconnect during the cut"
        # Some tasks were running when the connections were reset, and ended after.
        across = [
            tid
            for tid in ids
            if outage.runs.first_start.get(tid, 1e18) < cut_at
            and outage.runs.last_end.get(tid, 0.0) > restored_at
        ]
        assert across, "no task ran across the whole cut"
        # A task never starts before its row is committed: none added during the
        # cut may have started before the database was reachable again.
        early = [tid for tid in during_cut if outage.runs.first_start[tid] < restored_at]
        assert not early, f"{len(early)} tasks started before their rows could be committed"

        await outage.check_all_ran_once(ids)


async def fill_buffer_during_cut(outage: Outage, ids: list[str], first: int) -> tuple[int, str]:
    """Cut the database; add tasks until refused.  Returns (accepted during the cut, message).

    Tasks are accepted (buffered) until the writer, having seen the failure,
    holds ``write_buffer_size`` writes; then ``add_task`` raises.
    """
    reset = outage.proxy.cut()
    assert reset >= 1, "the manager had no connection open through the proxy"
    cut_at = time.monotonic()
    accepted = 0
    n = first
    while time.monotonic() < cut_at + CUT_SECONDS - 1.0:
        n += 1
        try:
            ids.append(outage.submit(n))
        except BackpressureError as exc:
            return accepted, str(exc)
        accepted += 1
        await asyncio.sleep(0.005)
    raise AssertionError(
        f"add_task still accepted tasks {time.monotonic() - cut_at:.1f}s into the outage "
        f"({accepted} during the cut) with write_buffer_size="
        f"{outage.manager.write_buffer_size}"
    )


@pytest.mark.timeout(TEST_TIMEOUT_S)
@pytest.mark.parametrize("backend_name", SERVER_BACKENDS)
async def test_full_buffer_during_outage_refuses_with_503_and_keeps_what_it_accepted(
    schema_db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """write_buffer_size=20: during the cut add_task raises BackpressureError, the API
    answers 503, and after the restore every task accepted before or during the cut runs."""
    caplog.set_level(logging.WARNING, logger="taskflow")
    outage = Outage(schema_db_url, write_buffer_size=20)
    ids: list[str] = []

    async with outage.serve() as client:
        # Some load before the cut; tasks 0 and 20 still run across it.
        for n in range(30):
            ids.append(await outage.add(client, n))
            await asyncio.sleep(0.01)
        await until(lambda: len(outage.runs.starts) >= 10, 5, "tasks started before the cut")

        cut_at = time.monotonic()
        accepted_during_cut, message = await fill_buffer_during_cut(outage, ids, 100)
        assert writer_failures(caplog), "refused before the writer saw the database fail"
        assert accepted_during_cut >= 1, "nothing was buffered during the cut"
        assert "write buffer is full" in message and "database" in message, message
        assert "retry" in message.lower(), message

        # Still refused, and the same through the HTTP API, from async and sync routes.
        with pytest.raises(BackpressureError):
            outage.submit(200)
        for n, route in enumerate(("/work", "/work-sync"), start=201):
            response = await client.post(f"{route}/{n}")
            assert response.status_code == 503, (route, response.status_code, response.text)
            assert "write buffer is full" in response.json()["detail"], response.text
            assert response.headers.get("retry-after"), dict(response.headers)

        await at(cut_at + CUT_SECONDS)
        outage.proxy.restore()
        assert outage.proxy.refused >= 1, "nothing tried to reconnect during the cut"

        # Accepted again once the writer has caught up.
        def accepted_again() -> bool:
            try:
                ids.append(outage.submit(300))
            except BackpressureError:
                return False
            return True

        await until(accepted_again, 10, "add_task accepted again after the restore")
        for n, route in enumerate(("/work", "/work-sync"), start=301):
            response = await client.post(f"{route}/{n}")
            assert response.status_code == 200, (route, response.status_code, response.text)
            ids.append(response.json()["task_id"])

        await outage.drain()
        await outage.check_all_ran_once(ids, check_logs=False)


@pytest.mark.timeout(TEST_TIMEOUT_S)
@pytest.mark.parametrize("backend_name", SERVER_BACKENDS)
async def test_slow_database_with_a_busy_writer_still_accepts_from_sync_routes(
    schema_db_url: str,
) -> None:
    """A brownout: the database answers, slowly (every reply delayed 250 ms).

    write_buffer_size=20.  A batch of 30 rows is being committed, slowly; the
    database is not failing, so add_task must accept more (up to ten times
    the buffer), from an ``async def`` route and from a ``def`` route alike
    (the latter calls add_task in a worker thread).  After the brownout every
    accepted task runs once and no row exists that no caller was given.
    """
    outage = Outage(schema_db_url, write_buffer_size=20)  # buffered: the buffer's limits
    ids: list[str] = []
    failures: list[str] = []

    async with outage.serve() as client:
        ids.append(await outage.add(client, SHORT_FROM))  # connections are open
        await outage.drain()
        outage.proxy.set_latency(0.25)
        for n in range(SHORT_FROM + 1, SHORT_FROM + 31):
            ids.append(outage.submit(n))  # accepted: the database is healthy
        await asyncio.sleep(0.05)  # the writer now commits those 30, slowly

        for i, route in enumerate(["/work-sync", "/work"] * 3):
            n = SHORT_FROM + 100 + i
            try:
                response = await client.post(f"{route}/{n}")
            except Exception as exc:  # the app raised: a 500
                failures.append(f"{route} raised {exc!r}")
                continue
            if response.status_code != 200:
                failures.append(f"{route}: HTTP {response.status_code} {response.text[:200]}")
            else:
                ids.append(response.json()["task_id"])

        outage.proxy.set_latency(0)
        await outage.drain()
        if failures:
            await asyncio.sleep(0.5)  # let any write still buffered reach the database
            await outage.manager.flush()
            rows = await rows_direct(outage.direct_url, "SELECT id, status FROM taskflow_tasks")
            stray = Counter(row["status"] for row in rows if row["id"] not in set(ids))
            raise AssertionError(
                f"{len(failures)} of 6 requests were not accepted by a slow but healthy "
                f"database: {failures}; rows for tasks no caller was given an id for, by "
                f"status: {dict(stray)}"
            )
        await outage.check_all_ran_once(ids, check_logs=False)


@pytest.mark.timeout(TEST_TIMEOUT_S)
@pytest.mark.parametrize("backend_name", SERVER_BACKENDS)
async def test_commit_applied_but_reply_lost_is_not_applied_twice(schema_db_url: str) -> None:
    """The server commits a batch, the connection dies before the client hears it.

    The writer cannot tell whether the batch was applied and retries it: the
    retry must not create a second copy of anything (rows, log lines) nor run
    a task twice.
    """
    outage = Outage(schema_db_url)
    losses = 1
    # On PostgreSQL a batch is one statement in autocommit: its reply is the commit's.
    autocommit = schema_db_url.startswith("postgresql")
    outage.proxy.lose_commit_replies(LOG_MARKER.encode(), times=losses, autocommit=autocommit)
    ids: list[str] = []

    async with outage.serve() as client:
        for n in range(60):
            ids.append(await outage.add(client, SHORT_FROM + n))
            await asyncio.sleep(0.01)
        await until(
            lambda: outage.proxy.lost_commits >= losses, 10, f"{losses} commit replies lost"
        )
        await outage.drain()
        await outage.check_all_ran_once(ids)


@pytest.mark.timeout(TEST_TIMEOUT_S)
@pytest.mark.parametrize("backend_name", SERVER_BACKENDS)
async def test_unanswering_database_counts_as_down_for_backpressure(
    schema_db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The server stops answering (connections reset, new ones get no reply) for 8 s.

    That database is down as much as one that refuses connections: within the
    8 s the writer must report failed writes, and once write_buffer_size (20)
    writes wait, add_task must refuse.  Tasks arrive at 10 per second, so a
    refusal can only come from the writer noticing the outage, never from the
    healthy limit (ten times the buffer, 200).  After the restore, everything
    accepted runs exactly once.
    """
    caplog.set_level(logging.WARNING, logger="taskflow")
    outage = Outage(schema_db_url, write_buffer_size=20)
    ids: list[str] = []
    hold_s = 8.0
    refused_after: float | None = None

    async with outage.serve() as client:
        ids.append(await outage.add(client, SHORT_FROM))
        await outage.drain()  # idle: the connections in the pool look fine until used
        outage.proxy.cut(hold=True)
        cut_at = time.monotonic()
        n = SHORT_FROM
        while time.monotonic() < cut_at + hold_s - 0.5:
            n += 1
            try:
                ids.append(outage.submit(n))
            except BackpressureError:
                refused_after = time.monotonic() - cut_at
                break
            await asyncio.sleep(0.1)
        failures_seen = len(writer_failures(caplog))
        pending = outage.manager.runtime.writer.pending if outage.manager.runtime else None
        await at(cut_at + hold_s)
        outage.proxy.restore()
        assert outage.proxy.held >= 1, "nothing tried to connect during the cut"

        await outage.drain()
        await outage.check_all_ran_once(ids, check_logs=False)
        assert failures_seen and refused_after is not None, (
            f"{hold_s:.0f}s into an outage where the server does not answer, the writer had "
            f"reported {failures_seen} failed writes and add_task had accepted "
            f"{len(ids) - 1} tasks without BackpressureError ({pending} writes waiting, "
            "write_buffer_size=20): the writer waits on the database without any timeout"
        )


@pytest.mark.timeout(TEST_TIMEOUT_S)
@pytest.mark.parametrize("backend_name", SERVER_BACKENDS)
async def test_a_short_outage_holds_responses_until_the_rows_commit(schema_db_url: str) -> None:
    """A 1.5 s cut, acknowledge_timeout 10 s: requests made during it wait, then get their ids."""
    outage = Outage(schema_db_url, acknowledge="committed")
    ids: list[str] = []
    async with outage.serve() as client:
        for n in range(10):
            ids.append(await outage.add(client, n))
        assert outage.proxy.cut() >= 1, "the manager had no connection open through the proxy"
        cut_at = time.monotonic()
        restoring = asyncio.get_running_loop().call_later(1.5, outage.proxy.restore)
        try:
            responses = await asyncio.gather(*(outage.post(client, n) for n in range(10, 30)))
        finally:
            restoring.cancel()
            outage.proxy.restore()
        waited = time.monotonic() - cut_at
        assert [r.status_code for r in responses] == [200] * 20, [r.text for r in responses]
        assert waited >= 1.4, f"the responses did not wait for the database ({waited:.2f}s)"
        ids += [r.json()["task_id"] for r in responses]
        await outage.drain()
        await outage.check_all_ran_once(ids)


@pytest.mark.timeout(TEST_TIMEOUT_S)
@pytest.mark.parametrize("mode", ["refuse", "hold"])
@pytest.mark.parametrize("backend_name", SERVER_BACKENDS)
async def test_a_long_outage_answers_503_and_creates_no_task(schema_db_url: str, mode: str) -> None:
    """A 4 s cut, acknowledge_timeout 1 s: 503 with Retry-After; none of those tasks runs."""
    outage = Outage(schema_db_url, acknowledge="committed", acknowledge_timeout=1.0)
    ids: list[str] = []
    async with outage.serve() as client:
        for n in range(10):
            ids.append(await outage.add(client, n))
        await outage.drain()
        assert outage.proxy.cut(hold=mode == "hold") >= 1, "no connection open through the proxy"
        started = time.monotonic()
        during = await asyncio.gather(*(outage.post(client, n) for n in range(10, 30)))
        waited = time.monotonic() - started
        await asyncio.sleep(max(0.0, 4.0 - (time.monotonic() - started)))
        outage.proxy.restore()
        # The writer retries at most every 2 s: wait until it has caught up.
        await asyncio.wait_for(outage.manager.flush(), 10)
        assert [r.status_code for r in during] == [503] * 20, [r.text for r in during]
        assert all(r.headers.get("retry-after") == "5" for r in during)
        assert all("not created" in r.json()["detail"] for r in during), during[0].text
        assert waited < 3.0, f"a 1 s acknowledge_timeout took {waited:.2f}s to answer"
        for n in range(30, 40):  # the database is back: accepted again
            ids.append(await outage.add(client, n))
        await outage.drain()
        await asyncio.sleep(0.5)  # a withdrawn row still in a retried commit lands meanwhile
        await outage.manager.flush()
        rows = await rows_direct(outage.direct_url, "SELECT id, status FROM taskflow_tasks")
    strays = Counter(row["status"] for row in rows if row["id"] not in set(ids))
    # A refused task never reached the table, or reached it as cancelled.
    assert set(strays) <= {"cancelled"}, strays
    assert set(outage.runs.starts) == set(ids), "a task ran whose request answered 503"
    await outage.check_all_ran_once(ids, cancelled_strays=True)
