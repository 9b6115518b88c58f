"""What a Redis store says at start: its data-format version, and a server that keeps nothing.

``RedisTaskRepository.prepare_schema`` returns one message for the manager
to log as a warning: the format problem (missing, not a version, newer
than this taskflow) and, when ``CONFIG GET`` shows that the server persists
nothing, what a restart of Redis would lose.  The tests read the server's
real configuration and expect accordingly; each uses a key prefix of its
own and deletes its keys afterwards.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio as aioredis

from taskflow import TaskManager
from taskflow.repository.factory import create_repository
from taskflow.repository.redis import RedisTaskRepository
from taskflow.repository.redis.repository import FORMAT_VERSION
from taskflow.settings import resolve_database_url
from tests.conftest import require_server

pytestmark = pytest.mark.redis

NOT_PERSISTED = "Redis persists nothing"


@pytest.fixture
def redis_url() -> str:
    return require_server("redis")


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of the test's own; every key under it is deleted afterwards."""
    name = f"tft-schema-{uuid.uuid4().hex}"
    yield name
    client = redis.Redis.from_url(redis_url)
    try:
        doomed = list(client.scan_iter(match=f"{{{name}}}:*"))
        if doomed:
            client.delete(*doomed)
    finally:
        client.close()


@pytest.fixture
async def repository(redis_url: str, prefix: str) -> AsyncIterator[RedisTaskRepository]:
    built = create_repository(resolve_database_url(f"{redis_url}?key_prefix={prefix}"))
    assert isinstance(built, RedisTaskRepository)
    await built.open()
    try:
        yield built
    finally:
        await built.close()


async def server_persists(client: aioredis.Redis) -> bool:
    """Whether the server keeps anything on disk, read as the repository reads it."""
    appendonly = (await client.config_get("appendonly"))["appendonly"]
    save = (await client.config_get("save"))["save"]
    return not (appendonly == "no" and save == "")


def startup_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "taskflow" and record.levelno == logging.WARNING
    ]


# -- the persistence warning -------------------------------------------------------------


async def test_the_warning_follows_the_server_configuration(
    repository: RedisTaskRepository,
) -> None:
    problem = await repository.prepare_schema(migrate=True)
    if await server_persists(repository.client):
        assert problem is None
        return
    assert problem is not None
    assert "\n" not in problem
    assert problem.startswith(NOT_PERSISTED)
    assert "loses every task, pending ones included" in problem
    assert "`appendonly yes`" in problem and "`appendfsync everysec` (or `always`)" in problem


async def test_no_warning_once_the_append_only_file_is_on(
    repository: RedisTaskRepository,
) -> None:
    client = repository.client
    before = str((await client.config_get("appendonly"))["appendonly"])
    try:
        await client.config_set("appendonly", "yes")
        assert await repository.prepare_schema(migrate=True) is None
    finally:
        await client.config_set("appendonly", before)
    assert (await client.config_get("appendonly"))["appendonly"] == before


async def test_a_server_that_refuses_config_gets_no_warning(
    redis_url: str, prefix: str, repository: RedisTaskRepository
) -> None:
    # As on managed services: a user that may do everything but CONFIG.
    if "@" in redis_url:
        pytest.skip("the test URL carries credentials of its own")
    user, password = f"tft-noconfig-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
    admin = repository.client
    await admin.acl_setuser(
        user,
        enabled=True,
        passwords=[f"+{password}"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-config"],
    )
    try:
        scheme, rest = redis_url.split("://", 1)
        limited_url = f"{scheme}://{user}:{password}@{rest}?key_prefix={prefix}"
        limited = create_repository(resolve_database_url(limited_url))
        assert isinstance(limited, RedisTaskRepository)
        await limited.open()
        try:
            with pytest.raises(redis.exceptions.NoPermissionError):
                await limited.client.config_get("appendonly")
            assert await limited.prepare_schema(migrate=True) is None
        finally:
            await limited.close()
    finally:
        await admin.acl_deluser(user)


# -- the format-version messages, as TaskManager logs them at startup -----------------------


async def start_and_stop(url: str, *, create_tables: bool) -> None:
    manager = TaskManager(database_url=url, create_tables=create_tables)
    await manager.startup()
    await manager.shutdown()


async def test_a_fresh_prefix_started_without_create_tables_names_the_fix(
    redis_url: str,
    prefix: str,
    repository: RedisTaskRepository,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="taskflow")
    await start_and_stop(f"{redis_url}?key_prefix={prefix}", create_tables=False)
    persists = await server_persists(repository.client)
    [warning] = startup_warnings(caplog)
    assert warning.startswith(f"taskflow: the Redis keys under prefix {prefix!r} have no format")
    assert "start once with create_tables=True" in warning
    # Both problems in one message, the format first.
    assert (NOT_PERSISTED in warning) is not persists
    assert await repository.client.get(repository.keys.format_version) is None


async def test_create_tables_writes_the_version_and_leaves_only_the_persistence_warning(
    redis_url: str,
    prefix: str,
    repository: RedisTaskRepository,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="taskflow")
    await start_and_stop(f"{redis_url}?key_prefix={prefix}", create_tables=True)
    stored = await repository.client.get(repository.keys.format_version)
    assert stored == str(FORMAT_VERSION).encode()
    warnings = startup_warnings(caplog)
    if await server_persists(repository.client):
        assert warnings == []
    else:
        assert [w.startswith(f"taskflow: {NOT_PERSISTED}") for w in warnings] == [True]
        assert "format version" not in warnings[0]


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (str(FORMAT_VERSION + 1), f"newer than this taskflow's {FORMAT_VERSION}: upgrade"),
        ("not-a-number", "not a format version: is this prefix taskflow's?"),
    ],
    ids=["newer", "not-a-version"],
)
async def test_a_format_this_taskflow_cannot_read_is_named_at_startup(
    stored: str,
    expected: str,
    redis_url: str,
    prefix: str,
    repository: RedisTaskRepository,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await repository.client.set(repository.keys.format_version, stored)
    caplog.set_level(logging.WARNING, logger="taskflow")
    # create_tables=True writes a version only when absent: the stored one stays.
    await start_and_stop(f"{redis_url}?key_prefix={prefix}", create_tables=True)
    assert await repository.client.get(repository.keys.format_version) == stored.encode()
    [warning] = startup_warnings(caplog)
    assert expected in warning
    persists = await server_persists(repository.client)
    assert (f". Also: {NOT_PERSISTED}" in warning) is not persists
