"""Crash drills: real uvicorn processes sharing one database, killed and stopped.

What only real processes show: a SIGKILL leaves rows behind that another
instance must account for (pending ones run, running ones become
``interrupted`` or run again), two live instances never run the same task,
an idempotency key holds across processes, and SIGTERM / Ctrl-C stop an
instance within its grace period with nothing left looking alive.

The app is ``tests/apps/durable_app.py``; every execution writes a durable
journal line before and after its work, so a task that ran twice (or on two
instances) is visible even across SIGKILL.  Run with ``-s`` to see the
one-line summaries.

Every drill runs on each SQL database and on Redis (a key prefix of the test's
own, its keys deleted afterwards).  What the store holds is read with plain
SQL on the SQL databases and through the repository interface on Redis
(``repository_rows`` of ``tests/stores.py``).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from taskflow.repository.redis.keys import KeySpace
from taskflow.settings import resolve_database_url
from tests.conftest import EVERY_BACKEND
from tests.processes import UvicornInstance as Instance
from tests.processes import closed_at_exit, sql_rows, start_uvicorn
from tests.stores import is_redis, repository_rows

LEASE = 3.0  # TASKFLOW_LEASE_SECONDS: heartbeats every 0.75 s
POLL = 0.2  # TASKFLOW_POLL_INTERVAL: the longest idle wait between claims
ACTIVE = ("pending", "running")


pytestmark = [
    pytest.mark.subprocess,
    pytest.mark.parametrize("backend_name", EVERY_BACKEND, indirect=True),
]


# -- processes ---------------------------------------------------------------


Launcher = Callable[..., Instance]


@pytest.fixture
def launch(store_url: str, tmp_path: Path, journal_dir: Path) -> Iterator[Launcher]:
    """Start durable_app instances on the test database; all stopped at teardown."""

    def start(name: str, *, wait: bool = True, **env_overrides: str) -> Instance:
        env = {
            "TASKFLOW_DATABASE_URL": store_url,
            "TASKFLOW_LEASE_SECONDS": str(LEASE),
            "TASKFLOW_POLL_INTERVAL": str(POLL),
            "TASKFLOW_INSTANCE_NAME": name,
            "JOURNAL_DIR": str(journal_dir),
            **env_overrides,
        }
        instance = start_uvicorn("tests.apps.durable_app:app", name, env, tmp_path, wait=False)
        started.append(instance)
        if wait:
            instance.wait_ready()
        return instance

    with closed_at_exit() as started:
        yield start


# -- the journal and the database ----------------------------------------------


@dataclass
class Journal:
    """What actually ran, per the instances' own journal files."""

    lines: list[tuple[str, str, str]]  # (instance, tag, "start" | "end")

    @classmethod
    def read(cls, directory: Path) -> Journal:
        lines = []
        for path in sorted(directory.glob("*.journal")):
            for raw in path.read_text().splitlines():
                instance, tag, event = raw.split(":")
                lines.append((instance, tag, event))
        return cls(lines)

    def events(self, tag: str) -> list[tuple[str, str]]:
        return [(inst, ev) for inst, t, ev in self.lines if t == tag]

    def ends(self) -> Counter[str]:
        return Counter(t for _inst, t, ev in self.lines if ev == "end")

    def starts(self) -> Counter[str]:
        return Counter(t for _inst, t, ev in self.lines if ev == "start")

    def instances_of(self, tag: str) -> set[str]:
        return {inst for inst, t, _ev in self.lines if t == tag}


TASK_COLUMNS = "id, func_name, status, owner, error, idempotency_key, lease_expires_at"


def task_rows(url: str) -> dict[str, dict[str, Any]]:
    if is_redis(url):
        columns = [c.strip() for c in TASK_COLUMNS.split(",")]
        rows = repository_rows(url).values()
        return {r["id"]: {c: r[c] for c in columns} for r in rows}
    return {r["id"]: r for r in sql_rows(url, f"SELECT {TASK_COLUMNS} FROM taskflow_tasks")}


def idempotency_rows(url: str) -> list[dict[str, Any]]:
    """The stored idempotency keys: the SQL table's rows, or Redis' hash of key -> task id."""
    if not is_redis(url):
        return sql_rows(url, "SELECT * FROM taskflow_idempotency_keys")
    target = resolve_database_url(url)
    client = redis.Redis.from_url(target.url.render_as_string(hide_password=False))
    try:
        held = client.hgetall(KeySpace(target.key_prefix).idempotency)
    finally:
        client.close()
    return [{"key": k.decode(), "task_id": v.decode()} for k, v in held.items()]


def wait_for(what: str, predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> float:
    """Poll ``predicate`` until true; returns the seconds it took, fails after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            pytest.fail(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(step)
    return time.monotonic() - started


def statuses(instance: Instance, ids: dict[str, str]) -> dict[str, str]:
    """tag -> status, read through the instance's task API."""
    return {tag: instance.task(task_id)["status"] for tag, task_id in ids.items()}


def enqueue(instance: Instance, route: str, tag: str, *seconds: float) -> dict[str, str]:
    """tag -> task id for the tasks one request adds (``tag.0``, ``tag.1``... when several)."""
    body = instance.post(route, tag=tag, seconds=list(seconds))
    return dict(zip(body["tags"], body["task_ids"], strict=True))


def report(record_property: Callable[[str, object], None], line: str) -> None:
    print(f"\n{line}")
    record_property("summary", line)


# -- a. SIGKILL --------------------------------------------------------------


REQUEUE_SECONDS = 3.0  # long enough to be mid-run at the kill, short enough to rerun


def test_sigkill_drill_every_task_accounted_for(
    launch: Launcher,
    store_url: str,
    journal_dir: Path,
    backend_name: str,
    record_property: Callable[[str, object], None],
) -> None:
    a = launch("A")
    ids: dict[str, str] = {}
    # One request each: the first task runs, the ones added after it wait (pending).
    ids |= enqueue(a, "/slow", "a", 30, 0.3, 0.3)  # a.0 running, a.1 a.2 pending
    ids |= enqueue(a, "/slow_sync", "s", 30, 0.3)  # s.0 running in a thread, s.1 pending
    ids |= enqueue(a, "/requeueable", "r", REQUEUE_SECONDS)  # running, runs again on B
    ids["n"] = a.post("/notify", tag="n")["task_id"]  # finishes before the kill
    running_at_kill = {"a.0", "s.0", "r"}
    pending_at_kill = {"a.1", "a.2", "s.1"}

    def ready() -> bool:
        seen = statuses(a, ids)
        return all(seen[t] == "running" for t in running_at_kill) and seen["n"] == "success"

    wait_for("A to be running a.0, s.0 and r", ready, timeout=10)
    before = statuses(a, ids)
    assert all(before[t] == "pending" for t in pending_at_kill), before

    a.process.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    a.process.wait(timeout=10)
    assert a.process.returncode == -signal.SIGKILL
    b = launch("B")

    def settled() -> bool:
        return not any(s in ACTIVE for s in statuses(b, ids).values())

    # B may start claiming once A's last lease runs out (<= LEASE after the kill),
    # within one poll; the requeued task then runs its full length again.
    budget = LEASE + POLL + REQUEUE_SECONDS + 8.0
    wait_for("B to settle every task of A", settled, timeout=budget)
    recovered_in = time.monotonic() - killed_at
    after = {tag: b.task(task_id) for tag, task_id in ids.items()}
    rows = task_rows(store_url)
    journal = Journal.read(journal_dir)
    duplicated = sorted(t for t, n in journal.ends().items() if n > 1)
    by_b = sorted(t for t in ids if ("B", "end") in journal.events(t))
    report(
        record_property,
        f"crash drill [{backend_name}]: enqueued={len(ids)} killed_running={len(running_at_kill)}"
        f" pending_at_kill={len(pending_at_kill)} recovered_by_B={len(by_b)} ({','.join(by_b)})"
        f" interrupted={sum(r['status'] == 'interrupted' for r in after.values())}"
        f" duplicated={len(duplicated)} settled_in={recovered_in:.1f}s",
    )

    for tag in pending_at_kill:  # never started on A: B runs them
        assert after[tag]["status"] == "success", (tag, after[tag])
        assert journal.events(tag) == [("B", "start"), ("B", "end")], (tag, journal.events(tag))
    for tag in ("a.0", "s.0"):  # mid-run when A died, not requeueable
        assert after[tag]["status"] == "interrupted", (tag, after[tag])
        assert "stopped" in (after[tag]["error"] or ""), (tag, after[tag])
        assert journal.events(tag) == [("A", "start")], (tag, journal.events(tag))
    assert after["r"]["status"] == "success", after["r"]
    assert after["r"]["retries_used"] == 1, after["r"]  # the dead attempt counts
    assert journal.events("r") == [("A", "start"), ("B", "start"), ("B", "end")]
    assert after["n"]["status"] == "success"
    assert journal.events("n") == [("A", "start"), ("A", "end")]
    # Nothing left looking alive, nothing missing, nothing finished twice.
    assert set(rows) == set(ids.values())
    assert not [r for r in rows.values() if r["status"] in ACTIVE], rows
    assert all(r["owner"] is None and r["lease_expires_at"] is None for r in rows.values()), rows
    assert duplicated == []


# -- b. two live instances ---------------------------------------------------


SHORT_TASKS = 60


async def _fire_short_tasks(a: Instance, b: Instance) -> dict[str, tuple[str, str]]:
    """SHORT_TASKS tiny tasks, alternately at A and B, async and sync; tag -> (instance, id)."""
    sem = asyncio.Semaphore(16)

    async def one(client: httpx.AsyncClient, i: int) -> tuple[str, tuple[str, str]]:
        target = (a, b)[i % 2]
        route = ("/slow", "/slow_sync")[(i // 2) % 2]
        async with sem:
            response = await client.post(
                f"{target.base}{route}", params={"tag": f"t{i}", "seconds": 0.02}
            )
        assert response.status_code == 200, response.text
        return f"t{i}", (target.name, response.json()["task_id"])

    async with httpx.AsyncClient(timeout=10) as client:
        pairs = await asyncio.gather(*(one(client, i) for i in range(SHORT_TASKS)))
    return dict(pairs)


def test_two_instances_never_run_a_task_twice(
    launch: Launcher,
    store_url: str,
    journal_dir: Path,
    backend_name: str,
    record_property: Callable[[str, object], None],
) -> None:
    grace = 1.5
    a = launch("A", wait=False, TASKFLOW_SHUTDOWN_GRACE=str(grace))
    b = launch("B", wait=False)
    a.wait_ready()
    b.wait_ready()

    placed = asyncio.run(_fire_short_tasks(a, b))
    ids = {tag: task_id for tag, (_inst, task_id) in placed.items()}
    # A chain on A: c.0 runs, c.1.. wait behind it. SIGTERM while c.0 runs: as
    # with FastAPI's own background tasks, A goes on with the chain for the
    # grace period; the one running when it ends is interrupted, and those
    # that never started are released at shutdown and B claims them.
    chain = enqueue(a, "/slow", "c", 1.0, 1.0, 1.0, 1.0)
    chain |= enqueue(a, "/slow_sync", "cs", 1.0, 1.0)
    ids |= chain
    wait_for(
        "A to run c.0 and cs.0",
        lambda: (
            statuses(a, {"c.0": chain["c.0"], "cs.0": chain["cs.0"]})
            == {"c.0": "running", "cs.0": "running"}
        ),
        timeout=10,
    )
    assert a.signal_and_wait(signal.SIGTERM, timeout=grace + 5), "A did not stop after SIGTERM"
    assert a.process.returncode in (0, -signal.SIGTERM), a.log_text()

    def settled() -> bool:
        return not any(s in ACTIVE for s in statuses(b, ids).values())

    wait_for("every task to settle on B", settled, timeout=LEASE + POLL + 10)
    after = statuses(b, ids)
    rows = task_rows(store_url)
    journal = Journal.read(journal_dir)
    both = sorted(t for t in ids if len(journal.instances_of(t)) > 1)
    released_to_b = sorted(t for t in chain if journal.instances_of(t) == {"B"})
    report(
        record_property,
        f"two instances [{backend_name}]: tasks={len(ids)}"
        f" success={sum(s == 'success' for s in after.values())}"
        f" released_by_A_run_by_B={len(released_to_b)} ran_on_both={len(both)}"
        f" A_stopped_in={a.stopped_in:.1f}s",
    )

    cut_by_grace = {t for t in chain if after[t] == "interrupted"}
    for tag in cut_by_grace:  # started on A within the grace, still running at its end
        assert journal.events(tag) == [("A", "start")], (tag, journal.events(tag))
    assert len({tag.split(".")[0] for tag in cut_by_grace}) == len(cut_by_grace)  # one a chain
    not_success = {t: s for t, s in after.items() if s != "success" and t not in cut_by_grace}
    assert not_success == {}, {t: (s, journal.events(t)) for t, s in not_success.items()}
    assert both == []
    for tag in ids:
        ends = 0 if tag in cut_by_grace else 1
        assert journal.starts()[tag] == 1 and journal.ends()[tag] == ends, journal.events(tag)
    for tag, (instance, _task_id) in placed.items():  # a live lease is never taken
        assert journal.instances_of(tag) == {instance}, (tag, journal.events(tag))
    assert journal.instances_of("c.0") == {"A"}  # finished within the grace period
    assert released_to_b, "no task released by A's shutdown was run by B"
    assert not [r for r in rows.values() if r["status"] in ACTIVE]


# -- c. idempotency across processes -----------------------------------------


REQUESTS = 80


async def _same_key_everywhere(a: Instance, b: Instance, key: str) -> list[str]:
    async def one(client: httpx.AsyncClient, i: int) -> str:
        target = (a, b)[i % 2]
        route = ("/notify", "/notify_sync")[(i // 2) % 2]
        response = await client.post(f"{target.base}{route}", params={"tag": "idem", "key": key})
        assert response.status_code == 200, response.text
        task_id: str = response.json()["task_id"]
        return task_id

    limits = httpx.Limits(max_connections=REQUESTS)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        return list(await asyncio.gather(*(one(client, i) for i in range(REQUESTS))))


def test_idempotency_key_across_processes(
    launch: Launcher,
    store_url: str,
    journal_dir: Path,
    backend_name: str,
    record_property: Callable[[str, object], None],
) -> None:
    a = launch("A", wait=False)
    b = launch("B", wait=False)
    a.wait_ready()
    b.wait_ready()
    key = "order-42"

    answers = asyncio.run(_same_key_everywhere(a, b, key))
    winner = answers[0]
    wait_for("the keyed task to finish", lambda: b.task(winner)["status"] == "success", 10)
    time.sleep(POLL * 2)  # room for a wrongly created second task to run
    journal = Journal.read(journal_dir)
    tasks = list(task_rows(store_url).values())
    keys = idempotency_rows(store_url)
    report(
        record_property,
        f"idempotency [{backend_name}]: requests={len(answers)} distinct_ids={len(set(answers))}"
        f" executions={journal.starts()['idem']} task_rows={len(tasks)} key_rows={len(keys)}",
    )

    assert Counter(answers) == {winner: REQUESTS}
    assert journal.starts()["idem"] == 1 and journal.ends()["idem"] == 1, journal.lines
    assert [(t["id"], t["idempotency_key"]) for t in tasks] == [(winner, key)]
    assert [(k["key"], k["task_id"]) for k in keys] == [(key, winner)]


# -- d. graceful stop ---------------------------------------------------------


GRACE = 1.0
CLEAN_EXIT = {signal.SIGTERM: (0, -signal.SIGTERM), signal.SIGINT: (0, 1, -signal.SIGINT)}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_graceful_stop_within_grace(
    launch: Launcher,
    store_url: str,
    backend_name: str,
    sig: signal.Signals,
    record_property: Callable[[str, object], None],
) -> None:
    a = launch("A", TASKFLOW_SHUTDOWN_GRACE=str(GRACE))
    ids = enqueue(a, "/slow", "ga", 20)
    ids |= enqueue(a, "/slow_sync", "gs", 20)
    ids |= enqueue(a, "/requeueable", "gr", 20)
    wait_for(
        "all three to run",
        lambda: set(statuses(a, ids).values()) == {"running"},
        timeout=10,
    )

    limit = GRACE + 4.0
    started = time.monotonic()
    exited = a.signal_and_wait(sig, timeout=limit)
    if not exited:
        a.kill()
    took = time.monotonic() - started
    rows = task_rows(store_url)
    by_tag = {tag: rows[task_id] for tag, task_id in ids.items()}
    report(
        record_property,
        f"graceful stop [{backend_name}/{sig.name}]: exited={exited} in {took:.1f}s"
        f" (limit {limit:.0f}s) rows=" + ",".join(f"{t}:{r['status']}" for t, r in by_tag.items()),
    )

    for tag in ("ga", "gs"):
        assert by_tag[tag]["status"] == "interrupted", (tag, by_tag[tag])
        assert by_tag[tag]["owner"] is None, (tag, by_tag[tag])
    assert by_tag["gr"]["status"] == "pending", by_tag["gr"]
    assert by_tag["gr"]["owner"] is None and by_tag["gr"]["lease_expires_at"] is None
    log = a.log_text()
    if not exited and "Finished server process" in log:
        pytest.fail(
            f"{sig.name}: the app shut down (the log says 'Finished server process') but the "
            f"process was still alive {limit:.0f} s later (shutdown_grace={GRACE}): interpreter "
            "exit is joining a non-daemon thread, i.e. the sync task still sleeping in the "
            f"thread executor.\n{log}",
            pytrace=False,
        )
    assert exited, (
        f"{sig.name}: uvicorn still running {limit:.0f} s later (shutdown_grace={GRACE}):\n{log}"
    )
    assert a.process.returncode in CLEAN_EXIT[sig], (a.process.returncode, log)
    assert "Application shutdown complete" in log
