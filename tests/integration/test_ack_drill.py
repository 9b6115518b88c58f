"""Acknowledgement drills: what a client was told, against what the database and journals show.

The promise under test: a task whose id reached a client (an HTTP 200 with
its ``task_id``) is never lost, and no attempt of a task runs twice, whatever
happens to the processes and the database.  Real uvicorn processes serve
``tests/apps/drill_app.py`` under a steady load (``CONCURRENCY`` clients,
every injection pattern, async / sync / retrying / failing tasks of 20-200 ms)
while the drill breaks things:

a. SIGKILL the instance mid-load, start another on the same database, SIGKILL
   that one too, start a third, settle (every database, and Redis);
b. two instances behind a TCP proxy (``tests/tcp_proxy.py``); cut it for
   ``CUTS[0]`` s, restore, cut for ``CUTS[1]`` s, restore, settle (servers only:
   PostgreSQL, MySQL, Redis);
c. one instance behind the proxy; cut it, keep sending, SIGKILL the instance
   mid-outage, restore, start another, settle (servers only).

On Redis the instances use a key prefix of the drill's own (deleted
afterwards), and the rows below are read through the repository interface
(``repository_rows`` of ``tests/stores.py``); on SQL, with plain SQL.

Then the figures, printed on one ``ACK-DRILL`` line per drill (``-s``), and
asserted to be 0:

* ``lost``: ids answered with HTTP 200 that have no row in ``taskflow_tasks``;
* ``double_started``: (task, attempt) pairs with more than one ``start`` line;
* ``end_not_success``: tasks whose journal has an ``end`` line (only a
  successful attempt writes one, so a retrying task's is on a later attempt)
  but whose row is missing or not ``success``.  Excused, and counted apart as
  ``excused_end_at_kill``: an ``end`` written by a process in the last
  ``KILL_WINDOW`` s before its SIGKILL (or, in drill c, from ``KILL_WINDOW`` s
  before the outage it was killed in), whose row is ``interrupted``: the
  function returned, but the process died before its ``success`` could be
  committed, which no library can prevent;
* ``success_without_end``: ``success`` rows whose attempt never wrote ``end``;
* ``active_after_settle``: rows still ``pending`` or ``running`` once the drill
  has waited (at most ``SETTLE_TIMEOUT`` s) for everything to finish;
* ``kept_after_503``: rows no client got an id for that are not
  ``cancelled``, beyond the number of requests that failed otherwise than
  with a 503 (a 503 says the task was not created; a request cut by a
  SIGKILL may have committed its row before the kill).

Other requests without a 200 (refused by a dead instance, reset by a SIGKILL,
timed out) promise nothing: they are counted, not checked.
Each drill also checks that it measured something: enough 200s, tasks caught
mid-run by the SIGKILLs, connections really reset by each cut.

Sizes come from the environment, small by default for CI:
``TASKFLOW_DRILL_REQUESTS`` (300 per drill), ``TASKFLOW_DRILL_CONCURRENCY`` (16),
``TASKFLOW_DRILL_CUTS`` (``3,8``: drill b's cuts, in seconds, each longer than
the lease), ``TASKFLOW_DRILL_OUTAGE`` (drill c's cut, default the first of
``CUTS``), ``TASKFLOW_DRILL_LEASE`` (2 s).  ``benchmarks/ack_drill.py`` runs them
at full size.  The journals and uvicorn logs stay in pytest's ``tmp_path``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import make_url
from tcp_proxy import TcpProxy, through_proxy, upstream_of

from taskflow.models import TaskStatus
from tests.conftest import EVERY_BACKEND
from tests.processes import (
    STARTUP_TIMEOUT,
    UvicornInstance,
    closed_at_exit,
    sql_rows,
    start_uvicorn,
)
from tests.stores import is_redis, repository_rows


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def _env_floats(name: str, default: tuple[float, ...]) -> tuple[float, ...]:
    raw = os.environ.get(name)
    return tuple(float(part) for part in raw.split(",")) if raw else default


REQUESTS = _env_int("TASKFLOW_DRILL_REQUESTS", 300)
CONCURRENCY = _env_int("TASKFLOW_DRILL_CONCURRENCY", 16)
LEASE = _env_float("TASKFLOW_DRILL_LEASE", 2.0)
CUTS = _env_floats("TASKFLOW_DRILL_CUTS", (3.0, 8.0))
OUTAGE = _env_float("TASKFLOW_DRILL_OUTAGE", CUTS[0])
# The instances' acknowledge_timeout: between drill b's two cuts, so that requests
# ride out the first cut and answer 503 in the second.
ACK_TIMEOUT = _env_float("TASKFLOW_DRILL_ACK_TIMEOUT", (CUTS[0] + CUTS[-1]) / 2)
POLL = 0.2  # TASKFLOW_POLL_INTERVAL of the instances
SEGMENT = 2.0  # seconds of load before, between and after the disruptions
KILL_WINDOW = 0.5  # an end line this close before its process's SIGKILL is excused
SETTLE_TIMEOUT = 20.0 + 5 * LEASE
QUIET = 1.0  # after settling: time for a wrongly held task to run anyway
REQUEST_TIMEOUT = max((*CUTS, OUTAGE)) + 10.0  # a request held through a cut may still answer
ROUTES = ("/bt/async", "/bt/sync", "/dep/async", "/dep/sync")
KINDS = ("async", "sync", "retrying", "failing")
ACTIVE = ("pending", "running")
ASSERTED = (
    "lost",
    "double_started",
    "end_not_success",
    "success_without_end",
    "active_after_settle",
    "kept_after_503",
)
APP = "tests.apps.drill_app:app"
SQLITE_HAS_NO_NETWORK = pytest.mark.skip(
    reason="SQLite is a file opened by the instances themselves: there is no connection to cut"
)
SERVER_BACKENDS = [
    pytest.param("sqlite", id="sqlite", marks=[pytest.mark.sqlite, SQLITE_HAS_NO_NETWORK]),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]
_BASE_TIMEOUT = 3 * STARTUP_TIMEOUT + SETTLE_TIMEOUT + 60 + REQUESTS / 20

pytestmark = [
    pytest.mark.subprocess,
    pytest.mark.drill,
]


# -- the load ------------------------------------------------------------------------


async def at(moment: float) -> None:
    """Sleep until ``time.monotonic()`` reaches ``moment``."""
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


class Load:
    """``total`` POSTs from ``CONCURRENCY`` clients, one every ``interval`` s when they keep up.

    Request ``n`` goes to one of the instances serving when it is sent (none
    are between a SIGKILL and the next instance's start: the clients wait),
    through route ``ROUTES[n % 4]`` for a task of kind ``KINDS[n // 4 % 4]``.
    Every answer is recorded: the ids of the 200s, a count of everything else.
    """

    def __init__(self, total: int, duration: float) -> None:
        self.total = total
        self.interval = duration / total
        self.issued = 0
        self.ids: list[str] = []
        self.failures: Counter[str] = Counter()
        self._targets: list[UvicornInstance] = []
        self._serving = asyncio.Event()

    def serve_on(self, *targets: UvicornInstance) -> None:
        self._targets = list(targets)
        self._serving.set()

    def pause(self) -> None:
        self._serving.clear()

    async def reach(self, issued: int, timeout: float) -> None:
        """Wait until ``issued`` requests have been sent."""
        deadline = time.monotonic() + timeout
        while self.issued < issued:
            if time.monotonic() > deadline:
                pytest.fail(f"only {self.issued} requests sent after {timeout:.0f} s")
            await asyncio.sleep(0.01)

    async def run(self) -> None:
        started = time.monotonic()
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT, limits=limits) as client:
            await asyncio.gather(*(self._client(client, started) for _ in range(CONCURRENCY)))

    async def _client(self, client: httpx.AsyncClient, started: float) -> None:
        while self.issued < self.total:
            n = self.issued
            self.issued += 1
            await at(started + n * self.interval)
            await asyncio.wait_for(self._serving.wait(), 2 * STARTUP_TIMEOUT)
            target = self._targets[n // 16 % len(self._targets)]
            path = f"{ROUTES[n % 4]}/{KINDS[n // 4 % 4]}"
            await self._send(client, f"{target.base}{path}", 0.02 + (n * 7 % 10) * 0.02)

    async def _send(self, client: httpx.AsyncClient, url: str, seconds: float) -> None:
        try:
            response = await client.post(url, params={"seconds": seconds})
        except httpx.TimeoutException:
            self.failures["timeout"] += 1
            return
        except httpx.ConnectError:
            self.failures["refused"] += 1
            return
        except httpx.TransportError:  # the connection died under the request (SIGKILL)
            self.failures["reset"] += 1
            return
        if response.status_code != 200:
            self.failures[f"http_{response.status_code}"] += 1
            return
        task_id = response.json().get("task_id")
        if isinstance(task_id, str) and task_id:
            self.ids.append(task_id)
        else:
            self.failures["http_200_without_task_id"] += 1


async def under_load(load: Load, disrupt: Callable[[], Awaitable[None]], timeout: float) -> None:
    """Run ``disrupt`` while ``load`` runs; then wait (bounded) for the load's last answers."""
    running = asyncio.create_task(load.run())
    try:
        await disrupt()
        await asyncio.wait_for(asyncio.shield(running), timeout)
    finally:
        if not running.done():
            running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    running.result()  # a client that failed (no instance came up) fails the drill


# -- processes ------------------------------------------------------------------------


Launcher = Callable[..., UvicornInstance]


@dataclass(frozen=True)
class Kill:
    """A SIGKILLed instance: its journal, and the size it had ``KILL_WINDOW`` s before
    (or when the outage it died in began)."""

    journal: Path
    mark: int


def journal_of(instance: UvicornInstance, journal_dir: Path) -> Path:
    return journal_dir / f"{instance.name}-{instance.pid}.journal"


def journal_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


async def sigkill(instance: UvicornInstance, load: Load, journal: Path, mark: int) -> Kill:
    """SIGKILL ``instance`` mid-load; the clients wait until ``load.serve_on`` again.

    ``mark``: the size of its ``journal`` when the window of excused ``end``
    lines began.
    """
    instance.process.send_signal(signal.SIGKILL)
    load.pause()
    await asyncio.to_thread(instance.process.wait, 10)
    assert instance.process.returncode == -signal.SIGKILL, instance.process.returncode
    return Kill(journal, mark)


@pytest.fixture
def launch(store_url: str, tmp_path: Path, journal_dir: Path) -> Iterator[Launcher]:
    """Start drill_app instances (on the test database unless told another URL).

    Blocking (it waits for the instance to answer): call it through
    ``asyncio.to_thread`` from a drill.  Every instance is stopped at teardown.
    """

    def start(name: str, database_url: str | None = None) -> UvicornInstance:
        env = {
            "TASKFLOW_DATABASE_URL": database_url or store_url,
            "TASKFLOW_LEASE_SECONDS": str(LEASE),
            "TASKFLOW_POLL_INTERVAL": str(POLL),
            "TASKFLOW_SHUTDOWN_GRACE": "2",
            "TASKFLOW_ACKNOWLEDGE_TIMEOUT": str(ACK_TIMEOUT),
            "TASKFLOW_INSTANCE_NAME": name,
            "JOURNAL_DIR": str(journal_dir),
        }
        instance = start_uvicorn(APP, name, env, tmp_path, wait=False)
        started.append(instance)
        instance.wait_ready()
        return instance

    with closed_at_exit() as started:
        yield start


def upstream(url: str) -> tuple[str, int]:
    """Where a proxy in front of the store of ``url`` forwards to (Redis: port 6379 by default)."""
    if is_redis(url):
        parsed = make_url(url)
        return parsed.host or "127.0.0.1", parsed.port or 6379
    return upstream_of(url)


@pytest.fixture
def proxy(store_url: str) -> Iterator[TcpProxy]:
    """A TCP proxy to the test server.  Request it before ``launch`` so that it outlives
    the instances at teardown (they shut down with their database reachable)."""
    tcp_proxy = TcpProxy(*upstream(store_url))
    tcp_proxy.start()
    try:
        yield tcp_proxy
    finally:
        tcp_proxy.close()


# -- what happened ---------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One journal line, and where it is."""

    task_id: str
    attempt: int
    pid: int
    event: str  # "start" | "end"
    journal: Path
    offset: int


def read_journals(journal_dir: Path) -> list[Entry]:
    entries = []
    for path in sorted(journal_dir.glob("*.journal")):
        offset = 0
        for raw in path.read_bytes().splitlines(keepends=True):
            parts = raw.decode().split()
            assert len(parts) == 4 and parts[3] in ("start", "end"), (path.name, raw)
            task_id, attempt, pid, event = parts
            entries.append(Entry(task_id, int(attempt), int(pid), event, path, offset))
            offset += len(raw)
    return entries


ROW_COLUMNS = ("id", "func_name", "status", "attempt", "error")


async def read_rows(url: str) -> dict[str, dict[str, Any]]:
    if is_redis(url):
        rows = (await asyncio.to_thread(repository_rows, url)).values()
        return {row["id"]: {c: row[c] for c in ROW_COLUMNS} for row in rows}
    query = f"SELECT {', '.join(ROW_COLUMNS)} FROM taskflow_tasks"
    return {row["id"]: row for row in await asyncio.to_thread(sql_rows, url, query)}


async def active_count(url: str) -> int:
    """How many rows are pending or running."""
    if is_redis(url):
        active = (TaskStatus.PENDING, TaskStatus.RUNNING)
        return len(await asyncio.to_thread(repository_rows, url, active))
    query = "SELECT COUNT(*) AS n FROM taskflow_tasks WHERE status IN ('pending', 'running')"
    count: int = (await asyncio.to_thread(sql_rows, url, query))[0]["n"]
    return count


async def settle(url: str) -> float:
    """Wait until no row is pending or running, at most ``SETTLE_TIMEOUT`` s; the seconds waited.

    Not a failure by itself when time runs out: the rows left are a figure.
    """
    started = time.monotonic()
    while await active_count(url):
        if time.monotonic() - started > SETTLE_TIMEOUT:
            break
        await asyncio.sleep(0.2)
    waited = time.monotonic() - started
    await asyncio.sleep(QUIET)
    return waited


@dataclass
class Figures:
    scenario: str
    backend: str
    requests: int
    ok: int
    failures: Counter[str]
    rows: int
    statuses: Counter[str]
    settled_in: float
    lost: list[str] = field(default_factory=list)
    double_started: list[tuple[str, int]] = field(default_factory=list)
    end_not_success: list[str] = field(default_factory=list)
    success_without_end: list[str] = field(default_factory=list)
    active_after_settle: list[str] = field(default_factory=list)
    excused_end_at_kill: list[str] = field(default_factory=list)
    mid_run_at_kill: int = 0
    ran_without_row: list[str] = field(default_factory=list)
    orphans: int = 0  # rows whose id no client received (its request failed after the insert)
    # Rows no client got an id for that are not ``cancelled``, beyond what the
    # failures other than 503 can explain (a request cut by a SIGKILL may have
    # committed its row; a 503 promises that no task was created).
    kept_after_503: list[str] = field(default_factory=list)

    def line(self) -> str:
        failures = ",".join(f"{k}:{v}" for k, v in sorted(self.failures.items())) or "-"
        statuses = ",".join(f"{k}:{v}" for k, v in sorted(self.statuses.items())) or "-"
        asserted = " ".join(f"{name}={len(getattr(self, name))}" for name in ASSERTED)
        return (
            f"ACK-DRILL scenario={self.scenario} backend={self.backend}"
            f" requests={self.requests} ok={self.ok} non_200={sum(self.failures.values())}"
            f" ({failures}) {asserted} | rows={self.rows} ({statuses}) orphans={self.orphans}"
            f" ran_without_row={len(self.ran_without_row)} mid_run_at_kill={self.mid_run_at_kill}"
            f" excused_end_at_kill={len(self.excused_end_at_kill)}"
            f" settled_in={self.settled_in:.1f}s"
        )

    def problems(self) -> list[str]:
        return [
            f"{name}={len(values)}: {values[:5]}"
            for name in ASSERTED
            if (values := getattr(self, name))
        ]


def measure(
    scenario: str,
    backend: str,
    load: Load,
    rows: dict[str, dict[str, Any]],
    entries: list[Entry],
    kills: list[Kill],
    settled_in: float,
) -> Figures:
    figures = Figures(
        scenario,
        backend,
        load.total,
        len(load.ids),
        load.failures,
        len(rows),
        Counter(row["status"] for row in rows.values()),
        settled_in,
    )
    starts = Counter((e.task_id, e.attempt) for e in entries if e.event == "start")
    ends = [e for e in entries if e.event == "end"]
    ended_attempts = {(e.task_id, e.attempt) for e in ends}
    killed = {kill.journal: kill.mark for kill in kills}

    def status(task_id: str) -> str | None:
        row = rows.get(task_id)
        return None if row is None else str(row["status"])

    def at_kill(entry: Entry) -> bool:
        return entry.journal in killed and entry.offset >= killed[entry.journal]

    figures.lost = [task_id for task_id in load.ids if task_id not in rows]
    figures.double_started = sorted(pair for pair, n in starts.items() if n > 1)
    excused = {e.task_id for e in ends if at_kill(e) and status(e.task_id) == "interrupted"}
    figures.excused_end_at_kill = sorted(excused)
    figures.end_not_success = sorted(
        {e.task_id for e in ends if status(e.task_id) != "success"} - excused
    )
    figures.success_without_end = sorted(
        task_id
        for task_id, row in rows.items()
        if row["status"] == "success" and (task_id, row["attempt"]) not in ended_attempts
    )
    figures.active_after_settle = sorted(t for t, row in rows.items() if row["status"] in ACTIVE)
    figures.mid_run_at_kill = len(
        {
            (e.task_id, e.attempt)
            for e in entries
            if e.event == "start"
            and e.journal in killed
            and status(e.task_id) == "interrupted"
            and rows[e.task_id]["attempt"] == e.attempt
        }
    )
    figures.ran_without_row = sorted({e.task_id for e in entries} - set(rows))
    orphans = set(rows) - set(load.ids)
    figures.orphans = len(orphans)
    kept = sorted(task_id for task_id in orphans if rows[task_id]["status"] != "cancelled")
    explained = sum(n for kind, n in load.failures.items() if kind != "http_503")
    figures.kept_after_503 = kept[explained:]
    return figures


@dataclass
class Drill:
    """One drill's database, journals and SIGKILLs, and its report."""

    backend: str
    url: str  # the server's own address, never the proxy's
    journal_dir: Path
    record_property: Callable[[str, object], None]
    kills: list[Kill] = field(default_factory=list)

    async def finish(self, scenario: str, load: Load, live: list[UvicornInstance]) -> Figures:
        """Settle, stop the live instances (their journals are then complete), measure, report.

        What was measured stays beside the journals, for a failure's post-mortem:
        ``rows.json`` (the table) and ``answers.json`` (what the clients were told).
        """
        settled_in = await settle(self.url)
        for instance in live:
            await asyncio.to_thread(instance.close)
        rows = await read_rows(self.url)
        entries = read_journals(self.journal_dir)
        figures = measure(scenario, self.backend, load, rows, entries, self.kills, settled_in)
        where = self.journal_dir.parent
        (where / "rows.json").write_text(json.dumps(list(rows.values()), indent=1))
        answers = {"ids": load.ids, "failures": load.failures}
        (where / "answers.json").write_text(json.dumps(answers, indent=1))
        line = figures.line()
        print(f"\n{line}")
        self.record_property("summary", line)
        return figures


@pytest.fixture
def drill(
    backend_name: str,
    store_url: str,
    journal_dir: Path,
    record_property: Callable[[str, object], None],
) -> Drill:
    return Drill(backend_name, store_url, journal_dir, record_property)


def check(figures: Figures, sanity: dict[str, bool]) -> None:
    """Fail with every problem at once: the drill's own validity, then the guarantees."""
    problems = [f"the drill measured too little: {what}" for what, ok in sanity.items() if not ok]
    problems += figures.problems()
    assert not problems, "\n".join([figures.line(), *problems])


def enough_answers(load: Load) -> dict[str, bool]:
    ok, without_id = len(load.ids), load.failures["http_200_without_task_id"]
    return {
        f"only {ok} of {load.total} requests got a 200": ok >= load.total // 4,
        f"{without_id} answers were a 200 without a task id": without_id == 0,
    }


# -- a. SIGKILL twice mid-load ------------------------------------------------------------


@pytest.mark.timeout(_BASE_TIMEOUT)
@pytest.mark.parametrize("backend_name", EVERY_BACKEND, indirect=True)
async def test_sigkill_twice_mid_load(drill: Drill, launch: Launcher, journal_dir: Path) -> None:
    """A is killed a third of the way through the load, B two thirds; C settles everything."""
    load = Load(REQUESTS, duration=3 * SEGMENT)
    live: list[UvicornInstance] = []

    async def disrupt() -> None:
        instance = await asyncio.to_thread(launch, "A")
        load.serve_on(instance)
        for at_request, successor in ((REQUESTS // 3, "B"), (2 * REQUESTS // 3, "C")):
            await load.reach(at_request, timeout=60)
            journal = journal_of(instance, journal_dir)
            mark = journal_size(journal)
            await asyncio.sleep(KILL_WINDOW)
            drill.kills.append(await sigkill(instance, load, journal, mark))
            instance = await asyncio.to_thread(launch, successor)
            load.serve_on(instance)
        live.append(instance)

    await under_load(load, disrupt, timeout=REQUEST_TIMEOUT + 3 * SEGMENT + REQUESTS / 10)
    figures = await drill.finish("a-sigkill", load, live)
    caught = {"no task was mid-run at either SIGKILL": figures.mid_run_at_kill > 0}
    check(figures, enough_answers(load) | caught)


# -- b. two instances, the database cut twice ----------------------------------------------


@pytest.mark.timeout(_BASE_TIMEOUT + 2 * sum(CUTS))
@pytest.mark.parametrize("backend_name", SERVER_BACKENDS)
async def test_two_instances_through_database_cuts(
    proxy: TcpProxy, launch: Launcher, drill: Drill
) -> None:
    """A and B reach the database through one proxy, cut for CUTS[0] s then CUTS[1] s."""
    assert all(cut > LEASE for cut in CUTS), f"cuts {CUTS} must outlast the lease ({LEASE} s)"
    url = through_proxy(drill.url, proxy.port)
    a, b = await asyncio.gather(
        asyncio.to_thread(launch, "A", url), asyncio.to_thread(launch, "B", url)
    )
    timeline = [SEGMENT, CUTS[0], SEGMENT, CUTS[1], SEGMENT]
    load = Load(REQUESTS, duration=sum(timeline))
    load.serve_on(a, b)
    resets: list[int] = []

    async def disrupt() -> None:
        started = time.monotonic()
        try:
            for cut in CUTS:
                await asyncio.sleep(SEGMENT)
                resets.append(proxy.cut())
                await asyncio.sleep(cut)
                proxy.restore()
        finally:
            proxy.restore()
        await at(started + sum(timeline))

    await under_load(load, disrupt, timeout=REQUEST_TIMEOUT + sum(timeline) + REQUESTS / 10)
    figures = await drill.finish("b-two-instances-cuts", load, [a, b])
    check(
        figures,
        enough_answers(load)
        | {
            f"a cut reset no connection ({resets})": min(resets) > 0,
            f"no request outlasted acknowledge_timeout={ACK_TIMEOUT:g}s with a 503": (
                load.failures["http_503"] > 0
            ),
        },
    )


# -- c. SIGKILL during an outage -------------------------------------------------------------


@pytest.mark.timeout(_BASE_TIMEOUT + 2 * OUTAGE)
@pytest.mark.parametrize("backend_name", SERVER_BACKENDS)
async def test_sigkill_during_outage(
    proxy: TcpProxy, launch: Launcher, drill: Drill, journal_dir: Path
) -> None:
    """A behind the proxy; cut; requests go on; A is SIGKILLed mid-cut; restore; B settles."""
    assert OUTAGE > LEASE, f"the outage ({OUTAGE} s) must outlast the lease ({LEASE} s)"
    url = through_proxy(drill.url, proxy.port)
    a = await asyncio.to_thread(launch, "A", url)
    load = Load(REQUESTS, duration=SEGMENT + OUTAGE + SEGMENT)
    load.serve_on(a)
    resets: list[int] = []
    live: list[UvicornInstance] = []

    async def disrupt() -> None:
        await asyncio.sleep(SEGMENT - KILL_WINDOW)
        journal = journal_of(a, journal_dir)
        mark = journal_size(journal)  # an end from here on may never be committed
        await asyncio.sleep(KILL_WINDOW)
        try:
            resets.append(proxy.cut())
            restore_at = time.monotonic() + OUTAGE
            await asyncio.sleep(OUTAGE / 2)
            drill.kills.append(await sigkill(a, load, journal, mark))
            await at(restore_at)
        finally:
            proxy.restore()
        live.append(await asyncio.to_thread(launch, "B", url))
        load.serve_on(live[-1])

    await under_load(load, disrupt, timeout=REQUEST_TIMEOUT + 2 * SEGMENT + OUTAGE + REQUESTS / 10)
    figures = await drill.finish("c-sigkill-in-outage", load, live)
    check(figures, enough_answers(load) | {"the cut reset no connection": resets[0] > 0})
