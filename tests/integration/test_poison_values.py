"""Values a database cannot store never wedge the writer, never strand a task, never break a read.

Each test sends "poison" (NUL, lone UTF-16 surrogates, 5 MB and 20 MB text,
1e400 / inf / nan, deep nesting, bytes that are not UTF-8) through one way
into storage: ``add_task`` over HTTP, ``enqueue()`` arguments, tags, task
results, error messages, log lines.  After every poison value it adds
ordinary tasks over HTTP, and at the end it checks, on SQLite, PostgreSQL
and MariaDB:

* every ordinary task was stored and ran (no wedged writer);
* no task is left ``pending`` or ``running``;
* ``GET /tasks`` (every page) and ``GET /tasks/{id}`` answer 200 for every task;
* what was stored shows the substitution (U+FFFD) or was refused at
  ``add_task()`` with a message giving the limit.

The last tests go around the clean-up on purpose, to check the writer's own
safety net: a state a database refuses becomes a ``failed`` row saying why,
and a row MariaDB cannot take (over its packet size, which drops the
connection as an outage would) is refused alone after a few attempts.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Body, FastAPI
from sqlalchemy import select, update

from taskflow import ManagedBackgroundTasks, TaskAdmin, TaskManager, task_log
from taskflow.db.tables import tasks_table
from taskflow.exceptions import TaskArgumentError
from taskflow.models import TaskRecord, TaskStatus, utcnow
from taskflow.storable import REPLACEMENT

MB = 1_000_000
ORDINARY_PER_POISON = 2
DRAIN_TIMEOUT_S = 60


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


NOT_UTF8 = b"\xff\xfe\xc3(".decode("utf-8", "surrogateescape")  # what a bad filename gives

# name -> value, for Python-side entry points.
POISON: dict[str, Any] = {
    "nul": "a\x00b",
    "surrogate": "x\ud800y",
    "surrogate_pair_halves": "\udc80\ud83d",
    "not_utf8_text": NOT_UTF8,
    "not_utf8_bytes": b"\xff\xfe\xc3(",
    "five_mb": "5" * (5 * MB),
    "twenty_mb": "2" * (20 * MB),
    "huge_float": 1e400,
    "inf": float("inf"),
    "nan": float("nan"),
    "deep": nested(200),
    "nul_key": {"k\x00": 1},
    "surrogate_key": {"\ud800": "v"},
}

# name -> raw JSON body, for add_task over HTTP (what FastAPI accepts).
HTTP_POISON: dict[str, bytes] = {
    "nul": b'{"value": "a\\u0000b"}',
    "surrogate": b'{"value": "\\ud800"}',
    "nan": b'{"value": NaN}',
    "infinity": b'{"value": Infinity}',
    "huge_float": b'{"value": 1e400}',
    "five_mb": b'{"value": "' + b"5" * (5 * MB) + b'"}',
    "twenty_mb": b'{"value": "' + b"2" * (20 * MB) + b'"}',
    "deep": b'{"value": ' + b"[" * 200 + b"1" + b"]" * 200 + b"}",
    "surrogate_key": b'{"value": {"\\udfff": 1}}',
}


@dataclass
class Seen:
    """What the tasks received and which ordinary tasks were added."""

    arguments: dict[str, Any] = field(default_factory=dict)
    ordinary_ran: set[int] = field(default_factory=set)
    ordinary_ids: list[str] = field(default_factory=list)
    poison_ids: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    holding: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


def same(a: Any, b: Any) -> bool:
    """Equality in which nan equals nan (a float argument must arrive exactly)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def build(url: str, seen: Seen) -> tuple[FastAPI, TaskManager]:
    manager = TaskManager(database_url=url, commit_interval=0.01)
    app = FastAPI()
    TaskAdmin(app, manager, auto_install=True)

    @manager.task()
    async def ordinary(n: int) -> int:
        seen.ordinary_ran.add(n)
        return n

    @manager.task()
    async def keep(name: str, value: Any) -> None:
        seen.arguments[name] = value

    @manager.task()
    async def hold() -> None:
        seen.holding.set()
        await seen.release.wait()

    @manager.task()
    async def give_back(name: str) -> Any:
        return POISON[name]

    @manager.task()
    async def fail_with(name: str) -> None:
        raise RuntimeError(POISON[name])

    @manager.task()
    async def log_it(name: str) -> None:
        value = POISON[name]
        task_log(value if isinstance(value, str) else repr(value)[:100], poison=value)

    @app.post("/ordinary/{n}")
    async def add_ordinary(n: int, tasks: ManagedBackgroundTasks) -> str:
        return tasks.add_task(ordinary, n)

    @app.post("/keep/{name}")
    async def add_keep(
        name: str, tasks: ManagedBackgroundTasks, value: Annotated[Any, Body(embed=True)]
    ) -> str:
        return tasks.add_task(keep, name, value)

    return app, manager


@pytest.fixture
async def served(database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, TaskManager, Seen]]:
    seen = Seen()
    app, manager = build(database_url, seen)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", timeout=60
        ) as client:
            yield client, manager, seen
            await asyncio.wait_for(manager.drain(), DRAIN_TIMEOUT_S)
            await check_nothing_wedged(client, manager, seen)


async def add_ordinary(client: httpx.AsyncClient, seen: Seen) -> None:
    for _ in range(ORDINARY_PER_POISON):
        n = len(seen.ordinary_ids)
        response = await client.post(f"/ordinary/{n}")
        assert response.status_code == 200, response.text
        seen.ordinary_ids.append(response.json())


async def check_nothing_wedged(client: httpx.AsyncClient, manager: TaskManager, seen: Seen) -> None:
    """Every ordinary task stored and run, nothing active left, every read answers 200."""
    await asyncio.wait_for(manager.drain(), DRAIN_TIMEOUT_S)
    assert seen.ordinary_ran == set(range(len(seen.ordinary_ids)))
    listed: list[dict[str, Any]] = []
    url: str | None = "/tasks?limit=7"
    while url is not None:
        response = await client.get(url)
        assert response.status_code == 200, response.text[:500]
        listed += response.json()
        cursor = response.headers.get("X-Next-Cursor")
        url = f"/tasks?limit=7&cursor={cursor}" if cursor else None
    by_id = {task["task_id"]: task for task in listed}
    for task_id in [*seen.ordinary_ids, *seen.poison_ids.values()]:
        assert task_id in by_id, f"task {task_id} was never stored"
    for task in listed:
        assert task["status"] not in ("pending", "running"), task
        detail = await client.get(f"/tasks/{task['task_id']}")
        assert detail.status_code == 200, detail.text[:500]
    for task_id in seen.ordinary_ids:
        assert by_id[task_id]["status"] == "success"


def refused_for_size(backend_name: str, name: str, exc: TaskArgumentError) -> None:
    # Only MariaDB's packet limit is below 20 MB; the message gives the limit.
    assert backend_name == "mysql" and name == "twenty_mb", exc
    assert "stores at most" in str(exc) and "bytes of arguments per task" in str(exc)


def task_function(manager: TaskManager, name: str) -> Any:
    registered = manager.registry.get(name)
    assert registered is not None
    return registered.func


async def detail(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    response = await client.get(f"/tasks/{task_id}")
    assert response.status_code == 200, response.text[:500]
    body: dict[str, Any] = response.json()
    return body


# -- through each entry point ------------------------------------------------------------


async def test_enqueue_arguments_arrive_exactly_or_are_refused_with_the_limit(
    served: tuple[httpx.AsyncClient, TaskManager, Seen], backend_name: str
) -> None:
    client, manager, seen = served
    keep = task_function(manager, "keep")
    for name, value in POISON.items():
        try:
            seen.poison_ids[name] = await asyncio.wait_for(manager.enqueue(keep, name, value), 30)
        except TaskArgumentError as exc:
            refused_for_size(backend_name, name, exc)
            seen.refused[name] = str(exc)
        await add_ordinary(client, seen)
    await asyncio.wait_for(manager.drain(), DRAIN_TIMEOUT_S)
    for name in seen.poison_ids:
        assert same(seen.arguments[name], POISON[name]), name
    # Far too deep for pickle: refused at once, with a message, on every database.
    with pytest.raises(TaskArgumentError, match="cannot store the arguments"):
        await manager.enqueue(keep, "deepest", nested(200_000))
    await add_ordinary(client, seen)


async def test_add_task_over_http_never_wedges_the_writer(
    served: tuple[httpx.AsyncClient, TaskManager, Seen], backend_name: str
) -> None:
    client, manager, seen = served
    headers = {"content-type": "application/json"}
    for name, body in HTTP_POISON.items():
        try:
            response = await client.post(f"/keep/{name}", content=body, headers=headers)
        except TaskArgumentError as exc:  # raised through the in-process transport
            refused_for_size(backend_name, name, exc)
        else:
            if response.status_code == 200:
                seen.poison_ids[name] = response.json()
            else:
                assert response.status_code in (422, 500), (name, response.status_code)
                refused = backend_name == "mysql" and name == "twenty_mb"
                assert refused or response.status_code == 422, (name, response.text[:300])
        await add_ordinary(client, seen)
    await asyncio.wait_for(manager.drain(), DRAIN_TIMEOUT_S)
    assert seen.arguments["surrogate"] == "\ud800"  # the function gets what was sent
    assert seen.arguments["nul"] == "a\x00b"
    assert math.isnan(seen.arguments["nan"])


async def test_tags_are_stored_with_the_substitution_visible(
    served: tuple[httpx.AsyncClient, TaskManager, Seen],
) -> None:
    client, manager, seen = served
    ordinary = task_function(manager, "ordinary")
    for name, value in POISON.items():
        n = len(seen.ordinary_ids)
        seen.ordinary_ids.append(await manager.enqueue(ordinary, n, tags={"poison": value}))
        seen.poison_ids[name] = seen.ordinary_ids[-1]
        await add_ordinary(client, seen)
    await asyncio.wait_for(manager.drain(), DRAIN_TIMEOUT_S)
    nul = await detail(client, seen.poison_ids["nul"])
    assert nul["tags"] == {"poison": f"a{REPLACEMENT}b"}
    surrogate = await detail(client, seen.poison_ids["surrogate"])
    assert surrogate["tags"] == {"poison": f"x{REPLACEMENT}y"}
    big = await detail(client, seen.poison_ids["twenty_mb"])
    assert (
        len(big["tags"]["poison"]) < 2000 and "[cut: 20000000 characters" in big["tags"]["poison"]
    )


async def test_results_are_stored_cleaned_and_the_task_succeeds(
    served: tuple[httpx.AsyncClient, TaskManager, Seen],
) -> None:
    client, manager, seen = served
    give_back = task_function(manager, "give_back")
    for name in POISON:
        seen.poison_ids[name] = await manager.enqueue(give_back, name)
        await add_ordinary(client, seen)
    await asyncio.wait_for(manager.drain(), DRAIN_TIMEOUT_S)
    results = {name: await detail(client, task_id) for name, task_id in seen.poison_ids.items()}
    assert all(task["status"] == "success" for task in results.values()), results.keys()
    assert results["nul"]["result"] == f"a{REPLACEMENT}b"
    assert results["surrogate"]["result"] == f"x{REPLACEMENT}y"
    assert results["surrogate_key"]["result"] == {REPLACEMENT: "v"}
    assert "not stored" in results["twenty_mb"]["result"]
    assert results["nan"]["result"] is None  # not JSON: no result, as for any such value


async def test_error_messages_are_stored_cleaned_and_the_task_fails(
    served: tuple[httpx.AsyncClient, TaskManager, Seen],
) -> None:
    client, manager, seen = served
    fail_with = task_function(manager, "fail_with")
    for name in POISON:
        seen.poison_ids[name] = await manager.enqueue(fail_with, name)
        await add_ordinary(client, seen)
    await asyncio.wait_for(manager.drain(), DRAIN_TIMEOUT_S)
    errors = {name: await detail(client, task_id) for name, task_id in seen.poison_ids.items()}
    assert all(task["status"] == "failed" for task in errors.values())
    assert errors["nul"]["error"] == f"RuntimeError: a{REPLACEMENT}b"
    assert errors["not_utf8_text"]["error"].count(REPLACEMENT) == 3
    assert "[cut: 20000014 characters in all]" in errors["twenty_mb"]["error"]


async def test_log_lines_are_stored_cleaned(
    served: tuple[httpx.AsyncClient, TaskManager, Seen],
) -> None:
    client, manager, seen = served
    log_it = task_function(manager, "log_it")
    for name in POISON:
        seen.poison_ids[name] = await manager.enqueue(log_it, name)
        await add_ordinary(client, seen)
    await asyncio.wait_for(manager.drain(), DRAIN_TIMEOUT_S)
    logs = {
        name: (await detail(client, task_id))["logs"] for name, task_id in seen.poison_ids.items()
    }
    assert logs["nul"][0].endswith(f"a{REPLACEMENT}b")
    assert logs["surrogate"][0].endswith(f"x{REPLACEMENT}y")
    assert all(len(lines) == 1 for lines in logs.values()), logs.keys()


# -- the writer's own safety net ------------------------------------------------------------


async def test_a_final_state_no_database_stores_becomes_a_failed_row_saying_why(
    served: tuple[httpx.AsyncClient, TaskManager, Seen],
) -> None:
    client, manager, seen = served
    task_id = await manager.enqueue(task_function(manager, "hold"))
    seen.poison_ids["refused final state"] = task_id
    await asyncio.wait_for(seen.holding.wait(), 10)
    # Around the clean-up: a final state with a lone surrogate (no database
    # takes one), written for the running task as its runner would.
    local = manager.local_tasks.held[task_id]
    poisoned = local.record.snapshot()
    poisoned.status = TaskStatus.SUCCESS
    poisoned.error = "late \ud800 error"
    writer = manager.runtime.writer
    assert writer is not None
    commit = writer.update(poisoned)
    await add_ordinary(client, seen)
    outcome = await asyncio.wait_for(commit, 30)
    assert task_id in outcome.fenced  # the runner stops: its state is not the stored one
    seen.release.set()
    await asyncio.wait_for(manager.drain(), DRAIN_TIMEOUT_S)
    stored = await detail(client, task_id)
    assert stored["status"] == "failed"
    assert stored["error"].startswith("taskflow could not store this task's success state")


async def test_a_row_over_the_packet_size_is_refused_alone(
    served: tuple[httpx.AsyncClient, TaskManager, Seen], backend_name: str
) -> None:
    client, manager, seen = served
    keep = task_function(manager, "keep")
    # Around add_task's size check: the writer meets a row over MariaDB's packet.
    template = await manager.enqueue(keep, "template", "x")
    record = await manager.get_task(template)
    assert record is not None
    seen.poison_ids["template"] = template
    huge = TaskRecord(
        task_id="00000000-0000-7000-8000-00000000abcd",
        func_name="keep",
        status=TaskStatus.FAILED,
        args=("huge", "h" * (20 * MB)),
        created_at=utcnow(),
        updated_at=utcnow(),
        run_at=utcnow(),
        end_time=utcnow(),
        args_stored=True,
        error="stored only where the database takes 20 MB rows",
    )
    writer = manager.runtime.writer
    assert writer is not None
    commit = writer.insert(huge)
    await add_ordinary(client, seen)
    outcome = await asyncio.wait_for(commit, 60)
    if backend_name == "mysql":
        assert huge.task_id in outcome.rejected
    else:
        assert not outcome.rejected
        seen.poison_ids["huge"] = huge.task_id
    await add_ordinary(client, seen)


# -- reads of values stored by something else ---------------------------------------------


@pytest.mark.parametrize("backend_name", ["sqlite"])
async def test_reads_answer_200_for_values_stored_by_something_else(
    served: tuple[httpx.AsyncClient, TaskManager, Seen],
) -> None:
    # SQLite's JSON is text: another writer can leave a lone surrogate or NaN in it.
    client, manager, seen = served
    ordinary = task_function(manager, "ordinary")
    task_id = await manager.enqueue(ordinary, 0, tags={"t": "fine"})
    seen.ordinary_ids.append(task_id)
    await asyncio.wait_for(manager.drain(), DRAIN_TIMEOUT_S)
    repository: Any = manager.repository
    async with repository.write_engine.begin() as conn:
        await conn.exec_driver_sql(
            "UPDATE taskflow_tasks SET result = ?, tags = ? WHERE id = ?",
            ('["\\ud800", NaN, Infinity]', '{"\\udfff": "\\ud800"}', task_id),
        )
    stored = await detail(client, task_id)
    assert stored["result"] == [REPLACEMENT, None, None]
    assert stored["tags"] == {REPLACEMENT: REPLACEMENT}
    listed = await client.get("/tasks")
    assert listed.status_code == 200, listed.text[:300]


# -- leases -----------------------------------------------------------------------------------


async def test_the_heartbeat_renews_only_the_tasks_this_instance_holds(
    served: tuple[httpx.AsyncClient, TaskManager, Seen],
) -> None:
    _client, manager, seen = served
    ordinary = task_function(manager, "ordinary")
    task_id = await manager.enqueue(ordinary, 0)
    seen.ordinary_ids.append(task_id)
    await asyncio.wait_for(manager.drain(), DRAIN_TIMEOUT_S)
    # A row naming this instance as owner that it does not hold: a final
    # write that never landed leaves one.
    soon = utcnow() + timedelta(seconds=1)
    repository: Any = manager.repository
    async with repository.write_engine.begin() as conn:
        await conn.execute(
            update(tasks_table)
            .where(tasks_table.c.id == task_id)
            .values(status="running", owner=manager.instance_id, lease_expires_at=soon)
        )
    dispatcher = manager.runtime.dispatcher
    assert dispatcher is not None
    await dispatcher.beat()
    async with repository.engine.connect() as conn:
        lease = await conn.scalar(
            select(tasks_table.c.lease_expires_at).where(tasks_table.c.id == task_id)
        )
    assert lease is not None and lease <= soon + timedelta(milliseconds=1)
    async with repository.write_engine.begin() as conn:  # leave nothing active behind
        await conn.execute(
            update(tasks_table).where(tasks_table.c.id == task_id).values(status="success")
        )
