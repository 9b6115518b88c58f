"""Shared database fixtures: one SQL backend parameter, empty databases, a leak-checked engine.

* ``backend_name``: ``"sqlite"``, ``"postgres"``, ``"mysql"`` (pick some with
  ``@pytest.mark.parametrize("backend_name", ["postgres"])`` on a test, or
  ``pytest -m "not mysql"``; add Redis with
  ``pytest.mark.parametrize("backend_name", EVERY_BACKEND, indirect=True)``).
* ``database_url``: what an app starts on (SQLite empty, servers with the
  schema, Redis on a key prefix of the test's own); ``store_url``: the same
  with the schema on SQLite too, for several processes starting at once.
* ``db_url``: a plain URL (``sqlite:///...``, ``postgresql://...``,
  ``mysql://...``) to an empty database; ``schema_db_url``: the same after
  ``metadata.create_all``; ``engine``: an ``AsyncEngine`` on it that must have
  every connection back in its pool when the test ends.

``"postgres-psycopg"`` and ``"mysql-asyncmy"`` (``DRIVER_VARIANTS``) are
PostgreSQL through psycopg 3 instead of asyncpg, MySQL/MariaDB through
asyncmy instead of aiomysql: the same server and database, another driver.
A ``TASKFLOW_TEST_POSTGRES_URL`` / ``TASKFLOW_TEST_MYSQL_URL`` naming a
driver (``postgresql+psycopg://``) keeps it for every test of that server.

Servers come from ``TASKFLOW_TEST_POSTGRES_URL`` / ``TASKFLOW_TEST_MYSQL_URL``
(defaults: the local servers, database ``taskflow_test``, created when
missing; a second pytest run at the same time gets ``taskflow_test_<pid>``).
An unreachable server skips its tests with the command that starts it; with
``CI=true`` it fails them instead, so CI never goes green by skipping.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import threading
import zlib
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from taskflow.db.engine import create_engine_for
from taskflow.db.tables import metadata
from taskflow.settings import resolve_database_url
from tests.redis_cluster import LocalCluster, redis_server_binary, start_cluster
from tests.stores import redis_prefix_url

_T = TypeVar("_T")

SQL_BACKENDS = ("sqlite", "postgres", "mysql")
EVERY_BACKEND = [
    *(pytest.param(name, id=name, marks=getattr(pytest.mark, name)) for name in SQL_BACKENDS),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]
CONNECT_TIMEOUT_S = 5
LOCK_TIMEOUT_S = 10


def in_ci() -> bool:
    """True when running in CI, where a missing server is a failure, not a skip."""
    return os.environ.get("CI", "").lower() == "true"


class _AdminLoop:
    """An event loop in a thread of its own.

    Admin connections then live for the whole session and can be used from
    sync fixtures and from inside async tests alike, never touching a test's
    own event loop.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float = 60) -> _T:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=self._loop.run_forever, name="taskflow-test-admin", daemon=True
            )
            self._thread.start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def close(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        self._loop = self._thread = None


_ADMIN = _AdminLoop()


def _lock_key(name: str) -> int:
    return zlib.crc32(f"taskflow-test:{name}".encode())


@dataclass
class DatabaseServer:
    """A database server the tests use.

    A session owns its test database through a lock held for the whole
    session: the configured one (``taskflow_test``) when free, else
    ``taskflow_test_<pid>``, created for the session and dropped after it, so
    two pytest runs at once (developers sharing a machine) never see each
    other's tables. Leftovers of killed runs are dropped when their lock is free.
    """

    backend: str  # "postgres" | "mysql"
    label: str
    env_var: str
    default_url: str
    how_to_start: str
    database: str | None = None
    _engine: AsyncEngine | None = None  # on `database`, for resets and create_all
    _server: AsyncEngine | None = None  # on the server itself, AUTOCOMMIT
    _lock_conn: AsyncConnection | None = None  # holds this session's lock on `database`
    _error: str | None = field(default=None)
    _checked: bool = False

    @property
    def configured_url(self) -> str:
        return os.environ.get(self.env_var) or self.default_url

    @property
    def url(self) -> str:
        """The plain URL (``postgresql://...``, ``mysql://...``) of this session's database."""
        if self.database is None:
            return self.configured_url
        url = make_url(self.configured_url).set(database=self.database)
        return url.render_as_string(hide_password=False)

    def _async_url(self, database: str | None) -> URL:
        # URL.set() ignores None: _replace can clear the database.
        return resolve_database_url(self.configured_url).url._replace(database=database)

    def _connect_args(self) -> dict[str, Any]:
        if self._async_url(None).get_driver_name() == "asyncpg":
            return {"timeout": CONNECT_TIMEOUT_S}
        return {"connect_timeout": CONNECT_TIMEOUT_S}

    async def _sql(self, statement: str, **params: Any) -> Any:
        assert self._lock_conn is not None
        return await self._lock_conn.scalar(text(statement), params)

    async def _try_lock(self, name: str) -> bool:
        if self.backend == "postgres":
            return bool(await self._sql("SELECT pg_try_advisory_lock(:k)", k=_lock_key(name)))
        return bool(await self._sql("SELECT GET_LOCK(:n, 0)", n=f"taskflow-test:{name}") == 1)

    async def _unlock(self, name: str) -> None:
        if self.backend == "postgres":
            await self._sql("SELECT pg_advisory_unlock(:k)", k=_lock_key(name))
        else:
            await self._sql("SELECT RELEASE_LOCK(:n)", n=f"taskflow-test:{name}")

    async def _drop_database(self, name: str) -> None:
        assert self._lock_conn is not None
        if self.backend == "postgres":
            await self._lock_conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            await self._lock_conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")

    async def _database_names(self) -> list[str]:
        assert self._lock_conn is not None
        if self.backend == "postgres":
            query = "SELECT datname FROM pg_database"
        else:
            query = "SHOW DATABASES"
        return list((await self._lock_conn.execute(text(query))).scalars())

    async def _open(self) -> None:
        base = make_url(self.configured_url).database
        if not base:
            raise RuntimeError(f"{self.env_var}={self.configured_url!r} names no database")
        # The server itself: the test database may not exist yet.
        self._server = create_async_engine(
            self._async_url("postgres" if self.backend == "postgres" else None),
            isolation_level="AUTOCOMMIT",
            connect_args=self._connect_args(),
        )
        self._lock_conn = await self._server.connect()
        names = await self._database_names()
        for stale in (n for n in names if re.fullmatch(rf"{re.escape(base)}_\d+", n)):
            if await self._try_lock(stale):  # its session is gone
                await self._drop_database(stale)
                await self._unlock(stale)
        name = base
        if not await self._try_lock(base):  # another session runs on it
            name = f"{base}_{os.getpid()}"
            if not await self._try_lock(name):
                raise RuntimeError(f"database {name} is locked by another session")
        if name not in names:
            if self.backend == "postgres":
                await self._lock_conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            else:
                await self._lock_conn.exec_driver_sql(
                    f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4"
                )
        self.database = name
        self._engine = create_async_engine(
            self._async_url(name),
            pool_size=1,
            max_overflow=1,
            pool_pre_ping=True,
            connect_args=self._connect_args(),
        )
        async with self._engine.connect():
            pass

    def available(self) -> bool:
        """Whether the server answers; the session's test database is made on the first call."""
        if not self._checked:
            self._checked = True
            try:
                _ADMIN.run(asyncio.wait_for(self._open(), CONNECT_TIMEOUT_S * 3))
            except Exception as exc:  # any failure means "not usable": report it
                first_line = (str(exc).strip().splitlines() or [""])[0]
                self._error = f"{type(exc).__name__}: {first_line}".rstrip(": ")
        return self._error is None

    def require(self) -> str:
        """The URL, or skip the test (fail it under ``CI=true``) saying how to start the server."""
        if self.available():
            return self.url
        where = make_url(self.configured_url).render_as_string(hide_password=True)
        message = (
            f"{self.label} is not reachable at {where} ({self._error}). "
            f"Start it with: {self.how_to_start}; or point {self.env_var} at a server."
        )
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)

    async def _reset(self) -> None:
        assert self._engine is not None
        async with self._engine.begin() as conn:
            if self.backend == "postgres":
                await conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_S}s'")
                leftover = await conn.scalar(
                    text(
                        "SELECT EXISTS (SELECT 1 FROM pg_class"
                        " WHERE relnamespace = 'public'::regnamespace)"
                        " OR EXISTS (SELECT 1 FROM pg_type"
                        " WHERE typnamespace = 'public'::regnamespace)"
                    )
                )
                if leftover:
                    await conn.exec_driver_sql("DROP SCHEMA public CASCADE")
                    await conn.exec_driver_sql("CREATE SCHEMA public")
                    await conn.exec_driver_sql("GRANT ALL ON SCHEMA public TO PUBLIC")
                return
            await conn.exec_driver_sql(f"SET SESSION lock_wait_timeout = {LOCK_TIMEOUT_S}")
            rows = (
                await conn.execute(
                    text(
                        "SELECT table_name, table_type FROM information_schema.tables"
                        " WHERE table_schema = DATABASE()"
                    )
                )
            ).all()
            if rows:
                await conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
                for name, kind in rows:
                    what = "VIEW" if kind == "VIEW" else "TABLE"
                    await conn.exec_driver_sql(f"DROP {what} IF EXISTS `{name}`")
                await conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 1")

    def reset(self) -> None:
        """Drop everything in the test database: taskflow's tables, Alembic's, a test's own."""
        _ADMIN.run(self._reset())

    async def _create_schema(self) -> None:
        assert self._engine is not None
        async with self._engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    def create_schema(self) -> None:
        """Create taskflow's tables from the models (``metadata.create_all``)."""
        _ADMIN.run(self._create_schema())

    async def _close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
        if self._lock_conn is not None and self.database is not None:
            if self.database != make_url(self.configured_url).database:
                await self._drop_database(self.database)
            await self._unlock(self.database)
            await self._lock_conn.close()
        if self._server is not None:
            await self._server.dispose()
        self._engine = self._server = self._lock_conn = None

    def close(self) -> None:
        """Release the session's database (dropping it when it was made for the session)."""
        if self._server is not None:
            _ADMIN.run(self._close())


SERVERS: dict[str, DatabaseServer] = {
    "postgres": DatabaseServer(
        backend="postgres",
        label="PostgreSQL",
        env_var="TASKFLOW_TEST_POSTGRES_URL",
        default_url="postgresql://postgres@127.0.0.1:5432/taskflow_test",
        how_to_start="pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    ),
    "mysql": DatabaseServer(
        backend="mysql",
        label="MySQL/MariaDB",
        env_var="TASKFLOW_TEST_MYSQL_URL",
        default_url="mysql://root@127.0.0.1:3306/taskflow_test",
        how_to_start="start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
    ),
}

REDIS_ENV_VAR = "TASKFLOW_TEST_REDIS_URL"
REDIS_DEFAULT_URL = "redis://127.0.0.1:6379/15"
_redis_checked: dict[str, bool] = {}


def _redis_answers(url: str) -> bool:
    parsed = make_url(url)
    try:
        with socket.create_connection(
            (parsed.host or "127.0.0.1", parsed.port or 6379), timeout=CONNECT_TIMEOUT_S
        ) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


# Backend names that reach a server through another driver: name -> (server, driver).
DRIVER_VARIANTS = {
    "postgres-psycopg": ("postgres", "postgresql+psycopg"),
    "mysql-asyncmy": ("mysql", "mysql+asyncmy"),
}


def server_of(backend: str) -> str:
    """The server a backend name runs on: "postgres-psycopg" runs on "postgres"."""
    return DRIVER_VARIANTS[backend][0] if backend in DRIVER_VARIANTS else backend


def with_driver(backend: str, url: str) -> str:
    """``url`` with the driver ``backend`` names, if it names one."""
    if backend not in DRIVER_VARIANTS:
        return url
    drivername = DRIVER_VARIANTS[backend][1]
    return make_url(url).set(drivername=drivername).render_as_string(hide_password=False)


def server_available(backend: str) -> bool:
    """Whether the test server for ``backend`` ("postgres", "mysql", "redis") answers."""
    if backend == "sqlite":
        return True
    if backend == "redis":
        url = os.environ.get(REDIS_ENV_VAR) or REDIS_DEFAULT_URL
        if url not in _redis_checked:
            _redis_checked[url] = _redis_answers(url)
        return _redis_checked[url]
    return SERVERS[server_of(backend)].available()


def require_server(backend: str) -> str:
    """The test URL for ``backend``; skips the test (fails it under ``CI=true``) when down."""
    if backend == "redis":
        url = os.environ.get(REDIS_ENV_VAR) or REDIS_DEFAULT_URL
        if server_available("redis"):
            return url
        message = (
            f"Redis is not reachable at {url}. Start it with: redis-server --daemonize yes "
            f"--bind 127.0.0.1 --port 6379 --save ''; or point {REDIS_ENV_VAR} at a server."
        )
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return with_driver(backend, SERVERS[server_of(backend)].require())


def pytest_configure(config: pytest.Config) -> None:
    for backend in SQL_BACKENDS:
        config.addinivalue_line("markers", f"{backend}: runs against the {backend} database")
    config.addinivalue_line("markers", "redis: runs against a Redis server")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for server in SERVERS.values():
        server.close()
    _ADMIN.close()


@pytest.fixture(
    params=[pytest.param(name, id=name, marks=getattr(pytest.mark, name)) for name in SQL_BACKENDS]
)
def backend_name(request: pytest.FixtureRequest) -> str:
    """One of "sqlite", "postgres", "mysql"."""
    name: str = request.param
    return name


@pytest.fixture
def db_url(backend_name: str, tmp_path: Path) -> Iterator[str]:
    """A plain URL to an empty database of ``backend_name``."""
    if backend_name == "sqlite":
        yield f"sqlite:///{tmp_path}/tasks.db"
        return
    url = require_server(backend_name)
    SERVERS[server_of(backend_name)].reset()
    yield url


@pytest.fixture
def schema_db_url(db_url: str, backend_name: str) -> str:
    """``db_url`` with taskflow's tables created from the models."""
    if backend_name == "sqlite":
        sync_engine = create_engine(db_url)
        try:
            metadata.create_all(sync_engine)
        finally:
            sync_engine.dispose()
    else:
        SERVERS[server_of(backend_name)].create_schema()
    return db_url


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    """Where the real-process drills' apps append their execution journals."""
    path = tmp_path / "journal"
    path.mkdir()
    return path


@pytest.fixture
def database_url(backend_name: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A store an app can start on: SQLite migrates itself at startup, servers get the models.

    On Redis, a key prefix of the test's own, its keys deleted after.
    """
    if backend_name == "redis":
        with redis_prefix_url(require_server("redis")) as url:
            yield url
    elif backend_name == "sqlite":
        yield request.getfixturevalue("db_url")
    else:
        yield request.getfixturevalue("schema_db_url")


@pytest.fixture
def store_url(backend_name: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """As ``database_url``, with the schema created on SQLite too.

    For the drills, whose several processes start on one database at once.
    """
    if backend_name == "redis":
        with redis_prefix_url(require_server("redis"), stem="drill") as url:
            yield url
    else:
        yield request.getfixturevalue("schema_db_url")


@pytest.fixture
async def engine(schema_db_url: str) -> AsyncIterator[AsyncEngine]:
    """taskflow's engine on ``schema_db_url``; no connection may stay checked out."""
    async_engine = create_engine_for(resolve_database_url(schema_db_url))
    try:
        yield async_engine
        checked_out = async_engine.pool.checkedout()  # type: ignore[attr-defined]
        assert checked_out == 0, (
            f"{checked_out} connection(s) still checked out of the pool when the test ended: "
            "a connection or session leaked"
        )
    finally:
        await async_engine.dispose()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A Redis Cluster of three primaries for the session, started from ``redis-server``.

    Skips without ``redis-server`` on the PATH; under ``CI=true`` fails instead.
    """
    binary = redis_server_binary()
    if binary is None:
        message = "redis-server is not installed: the Redis Cluster tests start their own cluster"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    cluster = start_cluster(binary, tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()
