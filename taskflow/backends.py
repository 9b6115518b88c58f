"""fastapi-taskflow's backend objects, kept as ways to name a database.

In taskflow the database is always the source of truth, so a "backend" is
simply where the tables live: ``TaskManager(snapshot_backend=PostgresBackend(url))``
means the same as ``TaskManager(database_url=url)``.
"""

from __future__ import annotations

from urllib.parse import urlencode

from taskflow.deprecations import warn_unneeded
from taskflow.exceptions import ConfigurationError
from taskflow.settings import sqlite_file_url


class SnapshotBackend:
    """A database location for ``TaskManager(snapshot_backend=...)``."""

    database_url: str

    def __init__(self, database_url: str) -> None:
        if not isinstance(database_url, str) or not database_url:
            raise ConfigurationError(f"a database URL is required, got {database_url!r}")
        self.database_url = database_url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.database_url!r})"


class SqliteBackend(SnapshotBackend):
    """A SQLite file (fastapi-taskflow's default backend)."""

    def __init__(self, db_path: str = "tasks.db") -> None:
        super().__init__(sqlite_file_url(db_path))
        self.db_path = db_path


class _ServerBackend(SnapshotBackend):
    """A database server named by its URL: ``Backend(url)`` or ``Backend(url=...)``.

    ``url`` is fastapi-taskflow's parameter name; ``database_url=`` is ours.
    """

    def __init__(self, url: str | None = None, *, database_url: str | None = None) -> None:
        if url is not None and database_url is not None:
            raise ConfigurationError(f"{type(self).__name__} takes url or database_url, not both")
        chosen = url if url is not None else database_url
        if chosen is None:
            raise ConfigurationError(
                f"{type(self).__name__} needs a URL: {type(self).__name__}(url)"
            )
        super().__init__(chosen)
        self.url = self.database_url


class PostgresBackend(_ServerBackend):
    """A PostgreSQL database, through asyncpg (``pip install "taskflow-sql[postgres]"``).

    A ``postgresql+psycopg://`` URL goes through psycopg 3 instead
    (``pip install "taskflow-sql[psycopg]"``).
    """


class MySQLBackend(_ServerBackend):
    """A MySQL or MariaDB database, through aiomysql (``pip install "taskflow-sql[mysql]"``).

    A ``mysql+asyncmy://`` URL goes through asyncmy instead
    (``pip install "taskflow-sql[asyncmy]"``).
    """


class RedisBackend(SnapshotBackend):
    """Redis as the store (``pip install "taskflow-sql[redis]"``).

    ``prefix`` (or ``key_prefix``) starts every key, so several apps share one
    Redis; fastapi-taskflow's ``ttl`` is accepted, warns and is not used:
    finished tasks are deleted by ``retention_days``, which also keeps the
    statistics right.  ``cluster=True`` says ``url`` is a node of a Redis
    Cluster, the same as writing it ``redis+cluster://`` (or ``rediss+cluster://``).
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        prefix: str = "taskflow",
        ttl: int | None = None,
        *,
        key_prefix: str | None = None,
        cluster: bool = False,
    ) -> None:
        warn_unneeded({"ttl": ttl}, stacklevel=2)
        if cluster:
            url = _as_cluster_url(url)
        super().__init__(url)
        self.url = url
        self.cluster = url.partition("://")[0].endswith("+cluster")
        self.prefix = key_prefix if key_prefix is not None else prefix
        self.ttl = ttl
        # What the manager resolves: the URL with the prefix as its ``key_prefix`` option.
        separator = "&" if "?" in url else "?"
        self.database_url = f"{url}{separator}{urlencode({'key_prefix': self.prefix})}"


def _as_cluster_url(url: str) -> str:
    scheme, separator, rest = url.partition("://")
    if scheme in ("redis+cluster", "rediss+cluster"):
        return url
    if not separator or scheme not in ("redis", "rediss"):
        raise ConfigurationError(
            f"RedisBackend(cluster=True) needs a redis:// or rediss:// URL, got {url!r}"
        )
    return f"{scheme}+cluster://{rest}"


def choose_database_url(
    database_url: str | None,
    snapshot_backend: SnapshotBackend | str | None,
    snapshot_db: str | None,
) -> str | None:
    """The URL named by the ways a ``TaskManager`` can be given a database, in precedence order."""
    if database_url is not None:
        return database_url
    if isinstance(snapshot_backend, SnapshotBackend):
        return snapshot_backend.database_url
    if isinstance(snapshot_backend, str):
        return snapshot_backend
    if snapshot_backend is not None:
        raise ConfigurationError(
            f"snapshot_backend must be a SnapshotBackend or a URL, got {snapshot_backend!r}"
        )
    if snapshot_db is not None:
        return sqlite_file_url(snapshot_db)
    return None


__all__ = ["MySQLBackend", "PostgresBackend", "RedisBackend", "SnapshotBackend", "SqliteBackend"]
