"""Database URL normalisation and the ``TASKFLOW_*`` environment.

Users hand us whatever URL they already use elsewhere (``postgresql://``,
``mysql://``, a plain ``sqlite:///`` path); we pick the async driver, check it
is installed, and fail at construction, not at the first request.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from taskflow.exceptions import ConfigurationError, missing_extra
from taskflow.url_options import split_options

ENV_DATABASE_URL = "TASKFLOW_DATABASE_URL"
MEMORY_URL = "sqlite+aiosqlite://"

# backend name -> (async driver, import name, extra that installs it)
_ASYNC_DRIVERS: dict[str, tuple[str, str, str]] = {
    "sqlite": ("aiosqlite", "aiosqlite", "sqlite"),
    "postgresql": ("asyncpg", "asyncpg", "postgres"),
    "mysql": ("aiomysql", "aiomysql", "mysql"),
}
# Other async drivers taskflow supports: name in the URL -> (driver, import name, extra).
# psycopg 3 is one driver for SQLAlchemy's sync and async dialects alike.
# The defaults stay asyncpg and aiomysql, so existing URLs keep their driver.
_CHOSEN_DRIVERS: dict[str, dict[str, tuple[str, str, str]]] = {
    "sqlite": {},
    "postgresql": {
        "psycopg": ("psycopg", "psycopg", "psycopg"),
        "psycopg_async": ("psycopg", "psycopg", "psycopg"),
    },
    "mysql": {"asyncmy": ("asyncmy", "asyncmy", "asyncmy")},
}
# Sync drivers users commonly name; their URLs are switched to the default async driver.
_SYNC_TWINS: dict[str, tuple[str, ...]] = {
    "sqlite": ("pysqlite",),
    "postgresql": ("psycopg2", "pg8000"),
    "mysql": ("pymysql", "mysqldb", "mysqlconnector"),
}
_BACKEND_ALIASES = {"postgres": "postgresql", "mariadb": "mysql", "sqlite": "sqlite"}
# URL schemes redis-py reads: TCP, TLS and a Unix socket.
REDIS_SCHEMES = ("redis", "rediss", "unix")
# A Redis Cluster, over TCP or TLS: redis-py's cluster client (repository/redis/connection.py).
REDIS_CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
DEFAULT_KEY_PREFIX = "taskflow"


@dataclass(frozen=True)
class DatabaseTarget:
    """A resolved database: the async URL to connect with and what kind it is."""

    url: URL
    backend: str  # "sqlite" | "postgresql" | "mysql" | "redis"
    # Typed driver options taken out of the URL's query (url_options.py).
    connect_args: dict[str, Any] = field(default_factory=dict)
    # Redis: the prefix of every key of this deployment (``?key_prefix=`` in the URL).
    key_prefix: str = DEFAULT_KEY_PREFIX

    @property
    def is_memory(self) -> bool:
        return self.backend == "sqlite" and self.url.database in (None, "", ":memory:")

    def render(self) -> str:
        """The URL with its password hidden, for messages and logs."""
        return self.url.render_as_string(hide_password=True)


def _parse(raw: str) -> URL:
    try:
        url = make_url(raw)
        url.port  # noqa: B018 - a non-numeric port only fails when read
    except (ArgumentError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot parse database URL {raw!r}: expected e.g. 'sqlite:///tasks.db', "
            "'postgresql://user:pass@host/db' or 'mysql://user:pass@host/db'"
        ) from exc
    return url


def _backend_of(url: URL, raw: str) -> str:
    name = url.get_backend_name()
    backend = _BACKEND_ALIASES.get(name, name)
    if backend not in _ASYNC_DRIVERS:
        raise ConfigurationError(
            f"unsupported database {name!r} in URL {url.render_as_string(hide_password=True)!r}: "
            "taskflow supports SQLite, PostgreSQL, MySQL/MariaDB "
            "and Redis (redis://, rediss:// or unix://)"
        )
    return backend


def _require_module(module: str, extra: str, url: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise missing_extra(module, extra, f"the database URL {url!r}")


def resolve_database_url(raw: str | None) -> DatabaseTarget:
    """Turn a user URL (or the environment, or nothing) into an async SQLAlchemy target.

    ``None`` means ``TASKFLOW_DATABASE_URL`` when set, otherwise an in-memory
    SQLite database.  Plain driver-less URLs get taskflow's async driver
    (aiosqlite, asyncpg, aiomysql), and so do URLs naming the usual sync
    drivers, so an app's existing URL works as is.  ``postgresql+psycopg://``
    keeps psycopg 3 (async as well) and ``mysql+asyncmy://`` asyncmy: the
    conformance suite runs on both.  Any other driver is refused: the write
    path feeds rows shaped for these drivers.
    """
    if raw is None:
        raw = os.environ.get(ENV_DATABASE_URL) or MEMORY_URL
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigurationError(f"database_url must be a non-empty string, got {raw!r}")
    url = _parse(raw.strip())
    if url.get_backend_name() in REDIS_SCHEMES:
        return _redis_target(url)
    backend = _backend_of(url, raw)
    driver, module, extra = _driver_for(backend, url)
    _require_module(module, extra, url.render_as_string(hide_password=True))
    # keep "mariadb" when the user wrote it: SQLAlchemy then applies MariaDB's rules
    dialect_name = "mariadb" if url.get_backend_name() == "mariadb" else backend
    kept, connect_args = split_options(backend, url.query, driver=driver)
    url = url.set(drivername=f"{dialect_name}+{driver}", query=kept)
    return DatabaseTarget(url=url, backend=backend, connect_args=connect_args)


def _driver_for(backend: str, url: URL) -> tuple[str, str, str]:
    """The (driver, import name, extra) a URL asks for: its own when supported, else the default."""
    given = url.drivername.partition("+")[2]
    chosen = _CHOSEN_DRIVERS[backend]
    if given in chosen:
        return chosen[given]
    default = _ASYNC_DRIVERS[backend]
    if given and given not in (default[0], *_SYNC_TWINS[backend]):
        scheme = url.get_backend_name()
        drivers = sorted({default[0], *(driver for driver, _m, _e in chosen.values())})
        urls = " or ".join(f"{scheme}+{driver}://" for driver in drivers)
        raise ConfigurationError(
            f"taskflow talks to {backend} through {' or '.join(drivers)}, not {given}: "
            f"use a plain {scheme}:// URL (or {urls})"
        )
    return default


def _redis_target(url: URL) -> DatabaseTarget:
    """A Redis URL as redis-py reads it, without taskflow's own ``key_prefix`` option."""
    if url.drivername not in (*REDIS_SCHEMES, *REDIS_CLUSTER_SCHEMES):  # "redis+something"
        raise ConfigurationError(
            f"taskflow talks to Redis through redis-py: use a plain redis://, rediss:// or "
            f"unix:// URL, or redis+cluster:// for a Redis Cluster, not {url.drivername}://"
        )
    _require_module("redis", "redis", url.render_as_string(hide_password=True))
    query = dict(url.query)
    prefix = query.pop("key_prefix", DEFAULT_KEY_PREFIX)
    if not isinstance(prefix, str):
        raise ConfigurationError("key_prefix appears more than once in the Redis URL")
    database = url.database or query.get("db") or "0"
    if url.drivername in REDIS_CLUSTER_SCHEMES and database != "0":
        raise ConfigurationError(
            f"a Redis Cluster has database 0 only, the URL names database {database!r}: "
            "drop it, and give each deployment a key_prefix of its own instead"
        )
    return DatabaseTarget(url=url.set(query=query), backend="redis", key_prefix=prefix)


def sqlite_file_url(path: str) -> str:
    """The URL for fastapi-taskflow's ``snapshot_db="tasks.db"`` shorthand."""
    if not path or path == ":memory:":
        return MEMORY_URL
    return f"sqlite+aiosqlite:///{path}"
