"""The group commit's pause under load, and the callers that must not wait it out.

Under load the writer waits up to ``commit_interval`` after a commit so that
more tasks share the next one.  Whoever waits for a commit cuts that short:
``enqueue()``, an eager task, a read through the manager (which must find a
task added a moment ago on this instance) and shutdown.  Each test makes the
writer nap for a second and checks the caller got through well within it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.background import BackgroundTask

from taskflow import ManagedBackgroundTasks, TaskAdmin, TaskManager
from taskflow.exceptions import ConfigurationError, WriterStoppedError
from taskflow.options import SERVER_COMMIT_INTERVAL, SQLITE_FILE_COMMIT_INTERVAL
from taskflow.repository.sql.sqlite_checkpoint import (
    BACKSTOP_CHECKPOINT_PAGES,
    COMMITS_PER_CHECKPOINT,
)

LONG_NAP_S = 1.0
# Under the nap, with room for a loaded machine: a caller that waited it out
# would take the rest of it, over 0.9 s (the nap began a few ms earlier).
PROMPT_S = 0.8

STARTED: dict[str, float] = {}


async def note_start(label: str) -> None:
    STARTED[label] = time.monotonic()


def note_plain(label: str) -> None:
    STARTED[f"plain {label}"] = time.monotonic()


def build(url: str, acknowledge: str = "committed") -> tuple[FastAPI, TaskManager]:
    manager = TaskManager(
        database_url=url,
        commit_interval=LONG_NAP_S,
        acknowledge=acknowledge,  # type: ignore[arg-type]
    )
    app = FastAPI()
    TaskAdmin(app, manager, auto_install=True)
    manager.task()(note_start)

    @app.post("/add/{label}")
    async def add(label: str, tasks: ManagedBackgroundTasks, eager: bool = False) -> str:
        return tasks.add_task(note_start, label, eager=eager)

    @app.post("/add-sync/{label}")
    def add_sync(label: str, tasks: ManagedBackgroundTasks, eager: bool = False) -> str:
        return tasks.add_task(note_start, label, eager=eager)  # from a worker thread

    @app.post("/add-two/{label}")
    async def add_two(label: str, tasks: ManagedBackgroundTasks) -> list[str]:
        first = tasks.add_task(note_start, f"{label}-first")
        await manager.flush()  # the second goes into a later commit than the first
        return [first, tasks.add_task(note_start, label)]

    @app.post("/add-then-plain/{label}")
    async def add_then_plain(label: str, tasks: ManagedBackgroundTasks) -> str:
        task_id = tasks.add_task(note_start, label)
        # A plain task after it in the request's list (what BackgroundTasks.add_task
        # does without install()): FastAPI runs it once the managed one settles.
        tasks.tasks.append(BackgroundTask(note_plain, label))
        return task_id

    return app, manager


@pytest.fixture
async def served(
    database_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[httpx.AsyncClient, TaskManager]]:
    STARTED.clear()
    # Marked ``buffered``: responses do not wait for commits, so a runner can
    # still be waiting for its row's commit after the response.
    buffered = request.node.get_closest_marker("buffered") is not None
    app, manager = build(database_url, "buffered" if buffered else "committed")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, manager
            await asyncio.wait_for(manager.drain(), 10)  # a stuck task fails, not hangs


async def make_writer_nap(client: httpx.AsyncClient, manager: TaskManager) -> None:
    """Commit once, so that the next write waits for the interval to run out."""
    assert (await client.post("/add/first")).status_code == 200
    await manager.flush()


async def started_after(label: str, since: float) -> float:
    """Seconds from ``since`` until the task labelled ``label`` started (fails if it never does)."""
    while label not in STARTED and time.monotonic() - since < LONG_NAP_S * 3:
        await asyncio.sleep(0.005)
    assert label in STARTED, f"the task {label!r} never started"
    return STARTED[label] - since


async def add_while_napping(client: httpx.AsyncClient, manager: TaskManager) -> str:
    """Add a task whose row then waits in the buffer for the interval; returns its id."""
    await make_writer_nap(client, manager)
    response = await client.post("/add/second")
    assert response.status_code == 200
    task_id: str = response.json()
    return task_id


async def test_a_task_added_a_moment_ago_is_found_by_the_api(
    served: tuple[httpx.AsyncClient, TaskManager],
) -> None:
    client, manager = served
    task_id = await add_while_napping(client, manager)
    started = time.monotonic()
    response = await client.get(f"/tasks/{task_id}")
    assert response.status_code == 200, response.text
    assert response.json()["task_id"] == task_id
    listed = (await client.get("/tasks")).json()
    assert task_id in {item["task_id"] for item in listed}
    assert time.monotonic() - started < PROMPT_S


async def test_enqueue_does_not_wait_out_the_interval(
    served: tuple[httpx.AsyncClient, TaskManager],
) -> None:
    client, manager = served
    await add_while_napping(client, manager)
    started = time.monotonic()
    task_id = await manager.enqueue(note_start, "enqueued")
    assert time.monotonic() - started < PROMPT_S
    found = await manager.repository.get_task(task_id)
    assert found is not None, "enqueue() returned before its row was committed"


@pytest.mark.parametrize(
    ("path", "limit_s"),
    [
        # Eager tasks (from the loop or a worker thread) commit at once.
        ("/add/eager?eager=true", PROMPT_S),
        ("/add-sync/eager?eager=true", PROMPT_S),
        # A task after the response waits for the group commit (that is the
        # point of the interval), and not longer.
        ("/add/later", LONG_NAP_S + PROMPT_S),
    ],
)
async def test_when_a_task_starts_while_the_writer_naps(
    served: tuple[httpx.AsyncClient, TaskManager], path: str, limit_s: float
) -> None:
    client, manager = served
    await make_writer_nap(client, manager)
    posted = time.monotonic()
    assert (await client.post(path)).status_code == 200
    label = path.split("/")[2].split("?")[0]
    assert await started_after(label, posted) < limit_s


async def test_shutdown_commits_what_the_writer_was_napping_on(database_url: str) -> None:
    app, manager = build(database_url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await make_writer_nap(client, manager)
            task_id = (await client.post("/add/last")).json()
            started = time.monotonic()
    assert time.monotonic() - started < LONG_NAP_S
    reader = TaskManager(database_url=database_url)
    await reader.startup()
    try:
        found = await reader.repository.get_task(task_id)
    finally:
        await reader.shutdown()
    assert found is not None, "the row waiting for the group commit was lost at shutdown"


def test_default_interval_depends_on_where_commits_run() -> None:
    assert TaskManager(database_url="sqlite:///tasks.db").commit_interval == (
        SQLITE_FILE_COMMIT_INTERVAL
    )
    assert TaskManager().commit_interval == SERVER_COMMIT_INTERVAL  # in memory
    assert TaskManager(database_url="postgresql://u@h/db").commit_interval == (
        SERVER_COMMIT_INTERVAL
    )
    assert TaskManager(commit_interval=0.05).commit_interval == 0.05


@pytest.mark.parametrize("bad", [0, -0.01, 1.5, True, "0.01"])
def test_bad_commit_interval_is_refused_at_construction(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="commit_interval"):
        TaskManager(commit_interval=bad)  # type: ignore[arg-type]


@pytest.mark.buffered
async def test_cancelling_one_task_leaves_the_others_of_its_commit_running(
    served: tuple[httpx.AsyncClient, TaskManager],
) -> None:
    """A runner that awaits a commit shares it with the batch; a cancel must not end it for all."""
    client, manager = served
    # The second task of a request waits for the first one, then for its own
    # commit; here that commit is the next group commit, which the writer
    # delays for a second after the flush inside the route.
    _first, doomed = (await client.post("/add-two/doomed")).json()
    await started_after("doomed-first", time.monotonic())  # the doomed runner awaits a commit
    kept = (await client.post("/add/kept")).json()  # into the same commit
    cancelled = await manager.cancel(doomed)
    assert cancelled.status.value == "cancelled"
    await asyncio.wait_for(manager.drain(), 10)
    record = await manager.get_task(kept)
    assert record is not None and record.status.value == "success", record
    assert "kept" in STARTED and "doomed" not in STARTED


@pytest.mark.buffered
async def test_a_task_that_cannot_start_leaves_the_others_of_its_commit_running(
    served: tuple[httpx.AsyncClient, TaskManager],
) -> None:
    """The tasks of one commit are started by one callback: one refusal must not stop the rest."""
    client, manager = served
    loop = asyncio.get_running_loop()

    def refuse_task_b(
        loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any
    ) -> asyncio.Task[Any]:
        local = coro.cr_frame.f_locals.get("local") if coro.cr_frame is not None else None
        if coro.__qualname__.endswith("._run_local") and local.args == ("b",):
            coro.close()
            raise RuntimeError("refused by the task factory")
        return asyncio.Task(coro, loop=loop, **kwargs)

    await make_writer_nap(client, manager)
    loop.set_task_factory(refuse_task_b)  # type: ignore[arg-type]
    try:
        ids = [(await client.post(f"/add/{label}")).json() for label in ("a", "b", "c")]
        await asyncio.wait_for(manager.drain(), 10)
    finally:
        loop.set_task_factory(None)
    statuses = [(await manager.get_task(task_id)).status.value for task_id in ids]  # type: ignore[union-attr]
    assert statuses == ["success", "pending", "success"]  # b waits for its lease to expire
    assert "a" in STARTED and "c" in STARTED and "b" not in STARTED


async def test_a_task_cancelled_before_its_first_step_lets_the_next_one_start(
    served: tuple[httpx.AsyncClient, TaskManager],
) -> None:
    """Its runner never runs (so never settles it): the cancel must, or its successor waits."""
    _client, manager = served
    local = manager.submit(note_start, ("never",), {})
    assert not isinstance(local, str)
    await manager.flush()  # committed: dispatch creates the runner task at once
    manager.dispatch(local)
    assert local.handle is not None and not local.handle.done()
    cancelled = await manager.cancel(local.record.task_id)  # before the runner's first step
    assert cancelled.status.value == "cancelled"
    assert local.is_settled
    await asyncio.wait_for(local.wait_settled(), 1)  # what the next task of its request awaits
    assert "never" not in STARTED


@asynccontextmanager
async def started_on_file(path: Path) -> AsyncIterator[TaskManager]:
    manager = TaskManager(database_url=f"sqlite:///{path}")
    manager.task()(note_start)
    await manager.startup()
    try:
        yield manager
    finally:
        await manager.shutdown()


async def enqueue_many(manager: TaskManager, count: int, label: str) -> None:
    for n in range(count):
        await manager.enqueue(note_start, f"{label}{n}")  # one commit each, at least
    await manager.drain()


async def test_a_worker_thread_checkpoints_the_sqlite_log(tmp_path: Path) -> None:
    """Pages reach the database file without SQLite's own (inline) checkpoint running."""
    path = tmp_path / "tasks.db"
    async with started_on_file(path) as manager:
        empty = path.stat().st_size  # the schema only: every row so far is in the log
        await enqueue_many(manager, COMMITS_PER_CHECKPOINT * 2, "n")  # well under the backstop
        for _ in range(100):
            if path.stat().st_size > empty + 64 * 1024:
                break
            await asyncio.sleep(0.02)
        copied = path.stat().st_size - empty
    # (measured before shutdown: closing the last connection checkpoints by itself)
    assert copied > 64 * 1024, f"only {copied} bytes reached the database file"


async def test_the_sqlite_log_stays_bounded_under_back_to_back_commits(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    async with started_on_file(path) as manager:
        await enqueue_many(manager, 1200, "n")  # more log than the backstop's worth
        conn = sqlite3.connect(path)  # read while running (see above)
        try:
            _busy, log_frames, _copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            conn.close()
    assert log_frames < BACKSTOP_CHECKPOINT_PAGES + 200, log_frames


async def test_shutdown_does_not_hold_a_request_whose_task_was_never_committed(
    database_url: str,
) -> None:
    """A plain task queued after a managed one waits for it; shutdown must release both."""
    STARTED.clear()
    app, manager = build(database_url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await make_writer_nap(client, manager)
            request = asyncio.ensure_future(client.post("/add-then-plain/late"))
            await asyncio.sleep(0.05)  # answered; its task waits for the next commit
            await manager.shutdown()
            done, _ = await asyncio.wait({request}, timeout=LONG_NAP_S * 2)
            assert done, "the request was still waiting after shutdown"
            assert request.result().status_code == 200


async def test_waiters_wake_when_the_writer_stops_with_a_commit_hung(tmp_path: Path) -> None:
    """A database that stops answering: shutdown gives up on the commit, and says so."""
    manager = TaskManager(database_url=f"sqlite:///{tmp_path / 'tasks.db'}", shutdown_grace=0)
    manager.task()(note_start)
    await manager.startup()
    answered = asyncio.Event()

    async def never_answers(batch: object) -> object:
        answered.set()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    manager.repository.apply = never_answers  # type: ignore[method-assign]
    enqueued = asyncio.ensure_future(manager.enqueue(note_start, "stuck"))
    await answered.wait()  # its commit is in flight, and hangs
    flushing = asyncio.ensure_future(manager.flush())
    assert manager.runtime is not None
    await manager.runtime.writer.stop(timeout=0.2)
    done, _ = await asyncio.wait({enqueued, flushing}, timeout=2)
    assert done == {enqueued, flushing}, "a waiter was left hanging"
    with pytest.raises(WriterStoppedError):
        enqueued.result()
    await manager.shutdown()


async def test_a_cancelled_enqueue_still_runs_its_task(
    served: tuple[httpx.AsyncClient, TaskManager],
) -> None:
    client, manager = served
    await add_while_napping(client, manager)
    waiting = asyncio.ensure_future(manager.enqueue(note_start, "abandoned"))
    await asyncio.sleep(0)
    waiting.cancel()  # the caller gives up (a client disconnect, a timeout)
    await asyncio.wait_for(manager.drain(), 10)
    assert "abandoned" in STARTED, "the task was left held and never ran"
