"""The conformance suite's fixtures: ``backend``, a fresh ``TaskRepository`` on an empty store.

Every repository is built by ``open_repository()``; a new implementation
(Redis) adds its name to ``BACKENDS`` and one branch there, and the whole
suite then runs on it.  The tests see only the ``TaskRepository`` interface.
``redis-cluster`` is the Redis backend on a three-primary Redis Cluster the
session starts (``tests/redis_cluster.py``); it carries the ``redis`` mark.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError

from taskflow.db.engine import create_engine_for
from taskflow.db.tables import metadata
from taskflow.repository.base import TaskRepository
from taskflow.repository.factory import create_repository
from taskflow.repository.redis import RedisTaskRepository
from taskflow.repository.sql import SqlTaskRepository
from taskflow.settings import resolve_database_url
from tests.conftest import require_server, server_of
from tests.redis_cluster import LocalCluster

SQL_BACKENDS = ("sqlite", "postgres", "postgres-psycopg", "mysql", "mysql-asyncmy")
BACKENDS = (*SQL_BACKENDS, "redis", "redis-cluster")
_MARKS = {"redis-cluster": pytest.mark.redis}
# The key prefix of each running test (node id -> prefix): its later repositories share it.
_REDIS_PREFIXES: dict[str, str] = {}


Finish = Callable[[], Awaitable[None]]


@pytest.fixture(
    params=[
        pytest.param(name, id=name, marks=_MARKS.get(name) or getattr(pytest.mark, server_of(name)))
        for name in BACKENDS
    ]
)
def backend_name(request: pytest.FixtureRequest) -> str:
    """Every backend of the suite (overrides the SQL-only one of ``tests/conftest.py``)."""
    name: str = request.param
    return name


async def open_repository(
    name: str, request: pytest.FixtureRequest, *, empty: bool
) -> tuple[TaskRepository, Finish]:
    """A repository on the test's store of backend ``name``, and how to close it.

    ``empty``: the test's first repository, which finds the store empty; every
    later call of the test reaches the same store (several app instances).
    The closing coroutine fails the test when the repository leaked a connection.
    """
    if name in SQL_BACKENDS:
        # Built as TaskManager builds it: by the factory, from the URL.
        url = await _sql_store(name, request, empty=empty)
        repository = create_repository(resolve_database_url(url))
        assert isinstance(repository, SqlTaskRepository)
        await repository.open()

        async def finish() -> None:
            try:
                await repository.release()
                checked_out = repository.engine.pool.checkedout()  # type: ignore[attr-defined]
                assert checked_out == 0, f"{checked_out} connection(s) leaked by the repository"
            finally:
                await repository.engine.dispose()

        return repository, finish
    if name == "redis":
        return await _redis_repository(require_server("redis"), request, empty=empty)
    if name == "redis-cluster":
        cluster: LocalCluster = request.getfixturevalue("redis_cluster")
        return await _redis_repository(cluster.url, request, empty=empty)
    raise ValueError(f"no conformance backend named {name!r}")


async def _redis_repository(
    url: str, request: pytest.FixtureRequest, *, empty: bool
) -> tuple[TaskRepository, Finish]:
    """A Redis repository on ``url`` under the test's own key prefix, deleted when the test ends.

    Every test gets a prefix of its own, so tests never see each other's keys
    and nothing needs emptying first; every repository of one test shares it.
    On a cluster the prefixes spread the tests over the three primaries.
    """
    prefix = _REDIS_PREFIXES.get(request.node.nodeid)
    if empty or prefix is None:
        prefix = _REDIS_PREFIXES[request.node.nodeid] = f"tft-{uuid.uuid4().hex}"
    # Built as TaskManager builds it: by the factory, from the URL.
    repository = create_repository(resolve_database_url(f"{url}?key_prefix={prefix}"))
    assert isinstance(repository, RedisTaskRepository)
    await repository.open()
    await repository.prepare_schema(migrate=True)

    async def finish() -> None:
        _REDIS_PREFIXES.pop(request.node.nodeid, None)
        try:
            # Every key of the prefix, whichever part of the backend wrote it.
            doomed = [key async for key in repository.client.scan_iter(match=f"{{{prefix}}}:*")]
            for start in range(0, len(doomed), 500):
                await repository.client.delete(*doomed[start : start + 500])
        finally:
            await repository.close()

    return repository, finish


# Server databases whose tables this session created: emptied between tests,
# which is far quicker than dropping and creating them again (a second on MariaDB).
_SQL_SCHEMAS: dict[str, str] = {}
# SQLite: the bytes of a database file holding the empty tables (copying beats creating).
_SQLITE_TEMPLATE: bytes | None = None


async def _sql_store(name: str, request: pytest.FixtureRequest, *, empty: bool) -> str:
    """The URL of the test's SQL database; with ``empty``, every taskflow table is emptied."""
    if name == "sqlite":
        return _sqlite_file(request)
    known = _SQL_SCHEMAS.get(name)
    if known is not None and not empty:
        return known
    if known is not None:
        try:
            await _delete_every_row(known)
            return known
        except DBAPIError:  # the tables are gone: another test reset the database
            del _SQL_SCHEMAS[name]
    url: str = request.getfixturevalue("schema_db_url")  # dropped everything, created the tables
    _SQL_SCHEMAS[name] = url
    return url


def _sqlite_file(request: pytest.FixtureRequest) -> str:
    """A new database file in the test's ``tmp_path``: a copy of one made by the root fixture."""
    global _SQLITE_TEMPLATE
    path: Path = request.getfixturevalue("tmp_path") / "tasks.db"
    if path.exists():
        return f"sqlite:///{path}"
    if _SQLITE_TEMPLATE is None:
        url: str = request.getfixturevalue("schema_db_url")
        _SQLITE_TEMPLATE = Path(url.removeprefix("sqlite:///")).read_bytes()
        return url
    path.write_bytes(_SQLITE_TEMPLATE)
    return f"sqlite:///{path}"


async def _delete_every_row(url: str) -> None:
    engine = create_engine_for(resolve_database_url(url))
    try:
        async with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                await conn.execute(table.delete())
    finally:
        await engine.dispose()


@dataclass
class Store:
    """One empty store per test; ``connect()`` opens one more repository on it."""

    name: str
    request: pytest.FixtureRequest
    finishers: list[Finish] = field(default_factory=list)
    opened_any: bool = False

    async def connect(self) -> TaskRepository:
        empty = not self.opened_any
        self.opened_any = True
        repository, finish = await open_repository(self.name, self.request, empty=empty)
        self.finishers.append(finish)
        return repository

    async def close(self) -> None:
        errors: list[BaseException] = []
        for finish in reversed(self.finishers):
            try:
                await finish()
            except BaseException as exc:  # close the others, then report the first
                errors.append(exc)
        self.finishers.clear()
        if errors:
            raise errors[0]


@pytest.fixture
async def store(backend_name: str, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """The test's store, for tests that need several instances on it."""
    opened = Store(backend_name, request)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def backend(store: Store) -> TaskRepository:
    """A repository on an empty store of each backend."""
    return await store.connect()


@pytest.fixture
async def pair(store: Store) -> tuple[TaskRepository, TaskRepository]:
    """Two repositories on one empty store: two app instances sharing it."""
    return await store.connect(), await store.connect()
