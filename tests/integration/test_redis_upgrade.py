"""Upgrading a Redis deployment from data format 1 to format 2 with ``taskflow db upgrade``.

Format-1 data is made as format 1 stored it: the tasks are inserted through
the repository (so the indexes, claim queue, leases, log lines and
statistics are a real deployment's, the same in both formats), then each
hash is rewritten the way format 1 wrote it (``format1_hash``, a copy of
format 1's codec: every non-None value under its SQL column name, the id
included), the default source's index is added back and the format key set
to 1.  After the upgrade every task must read back as it did before, and
the usual operations (list, get, claim, retention, metrics) must work.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from taskflow import TaskManager, cli
from taskflow.exceptions import ConfigurationError
from taskflow.models import TaskLogEntry, TaskRecord, TaskStatus
from taskflow.repository.factory import create_repository
from taskflow.repository.redis import RedisTaskRepository
from taskflow.repository.redis.codec import to_us
from taskflow.repository.redis.fields import LONG, STORED
from taskflow.repository.redis.repository import FORMAT_VERSION
from taskflow.repository.redis.upgrade import CONVERT, convert_tasks
from taskflow.repository.values import TaskQuery, WriteBatch
from taskflow.settings import resolve_database_url
from tests.conformance.records import at, finished, held_by, instance, make_record, tid
from tests.conftest import require_server
from tests.stores import delete_redis_prefix

pytestmark = pytest.mark.redis


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def format1_hash(record: TaskRecord) -> dict[str, Any]:
    """The hash format 1 stored for ``record``."""

    def when(value: Any) -> int | None:
        return None if value is None else to_us(value)

    values: dict[str, Any] = {
        "status": record.status.value,
        "executor": record.executor,
        "attempt": record.retries_used,
        "run_at": to_us(record.run_at),
        "updated_at": to_us(record.updated_at),
        "started_at": when(record.start_time),
        "finished_at": when(record.end_time),
        "duration_ms": None if record.duration_ms is None else float(record.duration_ms),
        "error": record.error,
        "stacktrace": record.stacktrace,
        "result": None if record.result is None else _json(record.result),
        "owner": record.owner,
        "lease_expires_at": when(record.lease_expires_at),
        "id": record.task_id,
        "func_name": record.func_name,
        "source": record.source,
        "priority": record.priority,
        "max_retries": record.max_retries,
        "created_at": to_us(record.created_at),
        "tags": _json(record.tags) if record.tags else None,
        "args": _json(list(record.args)) if record.args_stored else None,
        "kwargs": _json(dict(record.kwargs)) if record.args_stored else None,
        "payload": record.payload,
        "payload_format": record.payload_format,
        "lease_epoch": record.lease_epoch,
        "idempotency_key": record.idempotency_key,
        "retried_from": record.retried_from,
        "schedule_name": record.schedule_name,
        "scheduled_for": when(record.scheduled_for),
    }
    return {name: value for name, value in values.items() if value is not None}


def history() -> list[TaskRecord]:
    """Tasks in every state, with every optional field set somewhere."""
    return [
        make_record(1, args=(1, "x"), kwargs={"to": "ada"}, tags={"tenant": "t1"}),
        make_record(2, priority=5, executor="process", run_at=at(100), updated_at=at(3)),
        held_by(make_record(3), "inst-a", until=at(1000), lease_epoch=2, retries_used=1),
        finished(
            make_record(4, max_retries=3),
            TaskStatus.SUCCESS,
            end=at(10),
            result={"ok": True},
            duration_ms=12.5,
        ),
        finished(make_record(6), TaskStatus.FAILED, end=at(11), error="boom", duration_ms=2.0),
        finished(
            make_record(5, source="retry", retried_from=tid(6)),
            TaskStatus.FAILED,
            end=at(12),
            error="boom",
            stacktrace="Traceback (most recent call last):\n  ...\nValueError: boom\n",
            duration_ms=3.0,
            retries_used=2,
            max_retries=2,
        ),
        make_record(7, source="schedule", schedule_name="nightly", scheduled_for=at(7)),
        make_record(
            8, args_stored=False, payload=b"\x00\x01secret", payload_format="fernet", lease_epoch=4
        ),
        finished(make_record(9), TaskStatus.CANCELLED, end=at(20), updated_at=at(25)),
        finished(make_record(10, func_name="resize"), TaskStatus.SUCCESS, end=at(30)),
    ]


@pytest.fixture
async def url() -> AsyncIterator[str]:
    server = require_server("redis")
    prefix = f"tft-upgrade-{uuid.uuid4().hex[:12]}"
    yield f"{server}?key_prefix={prefix}"
    delete_redis_prefix(server, prefix)


@pytest.fixture
async def repository(url: str) -> AsyncIterator[RedisTaskRepository]:
    built = create_repository(resolve_database_url(url))
    assert isinstance(built, RedisTaskRepository)
    await built.open()
    try:
        yield built
    finally:
        await built.close()


async def fill(repository: RedisTaskRepository) -> dict[str, TaskRecord]:
    """The history in format 2, with a log line; returns each task as the repository reads it."""
    await repository.prepare_schema(migrate=True)
    log = TaskLogEntry(tid(3), 1, "INFO", "half way", at(4), {"step": 2})
    await repository.apply(WriteBatch(inserts=history(), logs=[log]))
    read = {record.task_id: await repository.get_task(record.task_id) for record in history()}
    return {task_id: record for task_id, record in read.items() if record is not None}


async def to_format1(repository: RedisTaskRepository, records: dict[str, TaskRecord]) -> None:
    """Rewrite the deployment as format 1 stored it."""
    client, keys = repository.client, repository.keys
    for record in records.values():
        await client.delete(keys.task(record.task_id))
        await client.hset(keys.task(record.task_id), mapping=format1_hash(record))
        if record.source == "manual":
            await client.zadd(keys.by_source("manual"), {record.task_id: to_us(record.created_at)})
    await client.set(keys.format_version, "1")


async def stored_names(client: aioredis.Redis, repository: RedisTaskRepository) -> set[str]:
    names: set[str] = set()
    for task_id in await client.zrange(repository.keys.created, 0, -1):
        names |= {n.decode() for n in await client.hkeys(repository.keys.task(task_id.decode()))}
    return names


async def listed(repository: RedisTaskRepository, **query: Any) -> list[str]:
    page = await repository.list_tasks(TaskQuery(limit=100, **query))
    return [record.task_id for record in page.items]


QUERIES: list[dict[str, Any]] = [
    {},
    {"source": "manual"},
    {"source": "retry"},
    {"status": [TaskStatus.FAILED]},
    {"func_name": "resize"},
    {"search": "0000000a"},
]


async def upgrade_command(url: str) -> int:
    """``taskflow db upgrade --url url``, in a thread: the command runs its own event loop."""
    return await asyncio.to_thread(cli.main, ["db", "upgrade", "--url", url])


def test_no_stored_name_is_a_long_name() -> None:
    # How the upgrade tells a format-1 hash from a format-2 one.
    assert not set(STORED) & set(LONG) and "id" not in LONG


async def test_a_manager_refuses_format_1_and_the_upgrade_converts_it(
    url: str, repository: RedisTaskRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    before = await fill(repository)
    lists = [await listed(repository, **query) for query in QUERIES]
    metrics = await repository.metrics()
    await to_format1(repository, before)

    with pytest.raises(ConfigurationError, match=r"format 1, older .* `taskflow db upgrade"):
        await repository.prepare_schema(migrate=True)
    manager = TaskManager(database_url=url)
    with pytest.raises(ConfigurationError, match="stop the instances of the older taskflow"):
        await manager.startup()

    assert await upgrade_command(url) == 0
    out = capsys.readouterr().out
    assert f"from format 1 to {FORMAT_VERSION}: 10 task(s) converted, 0 already" in out
    assert await repository.client.get(repository.keys.format_version) == b"2"
    assert await repository.client.exists(repository.keys.by_source("manual")) == 0
    assert await stored_names(repository.client, repository) <= set(LONG)

    for task_id, record in before.items():
        assert await repository.get_task(task_id) == record
    assert [await listed(repository, **query) for query in QUERIES] == lists
    assert await repository.metrics() == metrics
    await repository.prepare_schema(migrate=True)  # format 2: no error

    # A claim takes the due unowned tasks, with their fields as stored.
    claimed = await repository.claim("inst-b", now=at(50), lease_until=at(80), limit=10)
    assert {record.task_id for record in claimed} == {tid(1), tid(7), tid(8)}
    for record in claimed:
        expected = dataclasses.replace(
            before[record.task_id],
            owner="inst-b",
            lease_epoch=before[record.task_id].lease_epoch + 1,
            lease_expires_at=at(80),
            updated_at=at(50),
            logs=[],
        )
        assert record == expected
    # Retention deletes the finished tasks and uncounts them.
    assert await repository.delete_finished_before(at(1000)) == 5
    assert (await repository.metrics()).counts.get("success", 0) == 0
    assert sorted(await listed(repository)) == sorted([tid(1), tid(2), tid(3), tid(7), tid(8)])


async def test_an_upgrade_stopped_half_way_is_resumed(repository: RedisTaskRepository) -> None:
    before = await fill(repository)
    await to_format1(repository, before)
    client, keys = repository.client, repository.keys
    # One batch converted, as if the upgrade had stopped after it.
    assert await CONVERT(client, keys=[keys.format_version], args=[keys.key(), 0, 3]) == [3, 0, 3]
    done = await convert_tasks(client, keys, batch=4)
    assert (done.converted, done.already) == (7, 3)
    again = await convert_tasks(client, keys)
    assert (again.converted, again.already) == (0, 10)
    await client.set(keys.format_version, str(FORMAT_VERSION))
    for task_id, record in before.items():
        assert await repository.get_task(task_id) == record


async def test_the_upgrade_waits_for_the_live_instances_to_stop(
    url: str, repository: RedisTaskRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    from taskflow.models import utcnow

    await to_format1(repository, await fill(repository))
    await repository.register_instance(instance("old-one", seen=utcnow()))
    assert await upgrade_command(url) == 1
    err = capsys.readouterr().err
    assert "1 instance(s) of this deployment sent a heartbeat" in err
    assert "host-old-one" in err and "stop them, then run the upgrade again" in err
    assert await repository.client.get(repository.keys.format_version) == b"1"

    await repository.deregister_instance("old-one", now=utcnow())
    assert await upgrade_command(url) == 0
    assert await repository.client.get(repository.keys.format_version) == b"2"


async def test_check_and_current_name_an_older_format_and_the_fix(
    url: str, repository: RedisTaskRepository, capsys: pytest.CaptureFixture[str]
) -> None:
    await repository.client.set(repository.keys.format_version, "1")
    prefix = repository.keys.prefix
    assert await asyncio.to_thread(cli.main, ["db", "current", "--url", url]) == 0
    older = f"format 1 (older than this taskflow's {FORMAT_VERSION}) under key prefix {prefix!r}"
    assert capsys.readouterr().out == older + "\n"
    assert await asyncio.to_thread(cli.main, ["db", "check", "--url", url]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"the Redis keys under prefix {prefix!r} are in format 1, older than this taskflow's "
        f"{FORMAT_VERSION}: stop the instances of the older taskflow, then run "
        "`taskflow db upgrade --url <this Redis URL>`"
    ]
    # Nothing to convert: the upgrade only moves the version on.
    assert await upgrade_command(url) == 0
    assert "0 task(s) converted, 0 already converted" in capsys.readouterr().out
    assert await repository.client.get(repository.keys.format_version) == b"2"
