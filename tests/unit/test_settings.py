"""Database URL normalisation: async drivers, aliases, environment fallback, clear errors."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from taskflow import ConfigurationError, MissingDependencyError, TaskflowError, TaskManager
from taskflow.backends import RedisBackend
from taskflow.settings import ENV_DATABASE_URL, MEMORY_URL, resolve_database_url, sqlite_file_url


@pytest.fixture(autouse=True)
def _no_env_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own TASKFLOW_DATABASE_URL must not leak into these tests."""
    monkeypatch.delenv(ENV_DATABASE_URL, raising=False)


@pytest.fixture
def every_driver_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend every driver module is importable (no import happens: find_spec only)."""
    real = importlib.util.find_spec

    def fake(name: str, *args: Any, **kwargs: Any) -> Any:
        return real(name, *args, **kwargs) or real("json")

    monkeypatch.setattr(importlib.util, "find_spec", fake)


def _missing(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def fake(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == module or name.startswith(module + "."):
            return None
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake)


# -- plain URLs get the async driver ------------------------------------------


@pytest.mark.parametrize(
    ("raw", "drivername", "backend"),
    [
        ("sqlite:///tasks.db", "sqlite+aiosqlite", "sqlite"),
        ("sqlite:////abs/path/tasks.db", "sqlite+aiosqlite", "sqlite"),
        ("postgresql://user:pw@db.example:5432/app", "postgresql+asyncpg", "postgresql"),
        ("postgres://user:pw@db.example/app", "postgresql+asyncpg", "postgresql"),
        ("mysql://root@127.0.0.1:3306/app", "mysql+aiomysql", "mysql"),
        ("mariadb://root@127.0.0.1:3306/app", "mariadb+aiomysql", "mysql"),
    ],
)
def test_plain_urls_map_to_async_drivers(raw: str, drivername: str, backend: str) -> None:
    target = resolve_database_url(raw)
    assert target.url.drivername == drivername
    assert target.backend == backend
    assert not target.is_memory


def test_url_parts_survive_normalisation() -> None:
    target = resolve_database_url("postgres://alice:s3cret@db.example:6543/app?ssl=require")
    url = target.url
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "alice",
        "s3cret",
        "db.example",
        6543,
        "app",
    )
    assert url.query == {}
    assert target.connect_args == {"ssl": "require"}  # asyncpg's spelling of sslmode
    assert "s3cret" not in target.render()


def test_mariadb_url_keeps_the_mariadb_dialect() -> None:
    # SQLAlchemy applies MariaDB's rules only under the "mariadb" dialect name.
    target = resolve_database_url("mariadb://root@localhost/app")
    assert target.url.get_backend_name() == "mariadb"
    assert target.url.get_driver_name() == "aiomysql"
    assert target.backend == "mysql"


@pytest.mark.parametrize(
    "raw",
    [
        "sqlite+aiosqlite:///tasks.db",
        "postgresql+asyncpg://u@h/db",
        "mysql+aiomysql://u@h/db",
        "mariadb+aiomysql://u@h/db",
    ],
)
def test_explicit_async_drivers_are_kept(raw: str) -> None:
    assert resolve_database_url(raw).url.render_as_string(hide_password=False) == raw


@pytest.mark.parametrize(
    "raw",
    [
        "mysql+mysqlconnector_async://u@h/db",
        "postgresql+pgasync://u@h/db",
    ],
)
def test_other_async_drivers_are_refused_clearly(raw: str, every_driver_installed: None) -> None:
    """taskflow's write path is built for one async driver per database: others are refused.

    Swapping them silently would surprise; accepting them would break the
    pre-compiled statements, which feed driver-specific rows.
    """
    with pytest.raises(ConfigurationError, match="use a plain"):
        resolve_database_url(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "postgresql+psycopg://u@h/db",
        "postgres+psycopg://u@h/db",
        "postgresql+psycopg_async://u@h/db",
    ],
)
def test_psycopg_is_a_driver_of_its_own(raw: str) -> None:
    """psycopg 3 is async too: its URL keeps it, under SQLAlchemy's one name for it."""
    target = resolve_database_url(raw)
    assert target.url.drivername == "postgresql+psycopg"
    assert target.backend == "postgresql"


@pytest.mark.parametrize("raw", ["mysql+asyncmy://u@h/db", "mariadb+asyncmy://u@h/db"])
def test_asyncmy_is_a_driver_of_its_own(raw: str) -> None:
    target = resolve_database_url(raw)
    assert target.url.drivername == raw.partition(":")[0]
    assert target.backend == "mysql"


def test_refused_drivers_name_the_supported_ones(every_driver_installed: None) -> None:
    with pytest.raises(ConfigurationError, match=r"through aiomysql or asyncmy, not mysqldb_x"):
        resolve_database_url("mysql+mysqldb_x://u@h/db")
    with pytest.raises(ConfigurationError, match=r"through asyncpg or psycopg, not pgasync"):
        resolve_database_url("postgresql+pgasync://u@h/db")


def test_missing_psycopg_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    _missing("psycopg", monkeypatch)
    with pytest.raises(MissingDependencyError, match=r"taskflow-sql\[psycopg\]"):
        TaskManager(database_url="postgresql+psycopg://u@h/db")


@pytest.mark.parametrize(
    ("raw", "drivername"),
    [
        ("sqlite+pysqlite:///tasks.db", "sqlite+aiosqlite"),
        ("postgresql+psycopg2://u@h/db", "postgresql+asyncpg"),
        ("mysql+pymysql://u@h/db", "mysql+aiomysql"),
    ],
)
def test_explicit_sync_drivers_become_their_async_twin(raw: str, drivername: str) -> None:
    assert resolve_database_url(raw).url.drivername == drivername


# -- environment and defaults -------------------------------------------------


def test_environment_url_is_used_when_none_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_DATABASE_URL, "postgresql://u@envhost/envdb")
    target = resolve_database_url(None)
    assert target.url.drivername == "postgresql+asyncpg"
    assert (target.url.host, target.url.database) == ("envhost", "envdb")


def test_explicit_url_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_DATABASE_URL, "postgresql://u@envhost/envdb")
    assert resolve_database_url("sqlite:///mine.db").url.database == "mine.db"


def test_manager_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_DATABASE_URL, "mysql://root@envhost/envdb")
    manager = TaskManager()
    assert manager.target.backend == "mysql"
    assert manager.target.url.host == "envhost"


def test_default_is_in_memory_sqlite() -> None:
    target = resolve_database_url(None)
    assert target.backend == "sqlite"
    assert target.is_memory
    assert target.url.drivername == "sqlite+aiosqlite"
    assert str(target.url) == MEMORY_URL


def test_empty_environment_variable_means_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_DATABASE_URL, "")
    assert resolve_database_url(None).is_memory


@pytest.mark.parametrize("raw", ["sqlite://", "sqlite:///:memory:"])
def test_memory_urls(raw: str) -> None:
    assert resolve_database_url(raw).is_memory


def test_snapshot_db_shorthand() -> None:
    assert sqlite_file_url("tasks.db") == "sqlite+aiosqlite:///tasks.db"
    assert sqlite_file_url(":memory:") == MEMORY_URL
    assert TaskManager(snapshot_db="x.db").target.url.database == "x.db"


# -- errors ------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["", "   ", "not a url", "://nothing", "sqlite"])
def test_unparseable_urls_raise_configuration_error(raw: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve_database_url(raw)
    assert isinstance(info.value, TaskflowError)


def test_bad_port_raises_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        resolve_database_url("postgresql://user@host:notaport/db")


def test_non_string_url_raises_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="non-empty string"):
        resolve_database_url(123)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("oracle://scott:tiger@host/db", "oracle"),
        ("mssql+pyodbc://host/db", "mssql"),
        ("http://example.com/db", "http"),
    ],
)
def test_unsupported_databases_are_named(raw: str, name: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve_database_url(raw)
    message = str(info.value)
    assert repr(name) in message
    assert "SQLite" in message and "PostgreSQL" in message and "MySQL" in message


@pytest.mark.parametrize("raw", ["oracle://scott:tiger@host/db", "mssql://sa:tiger@host/db"])
def test_unsupported_database_error_hides_the_password(raw: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve_database_url(raw)
    assert "tiger" not in str(info.value)


def test_manager_rejects_bad_url_at_construction() -> None:
    with pytest.raises(ConfigurationError):
        TaskManager(database_url="oracle://host/db")


@pytest.mark.parametrize(
    ("raw", "module", "extra"),
    [
        ("postgresql://u@h/db", "asyncpg", "postgres"),
        ("postgres://u@h/db", "asyncpg", "postgres"),
        ("mysql://u@h/db", "aiomysql", "mysql"),
        ("mariadb://u@h/db", "aiomysql", "mysql"),
        ("sqlite:///tasks.db", "aiosqlite", "sqlite"),
    ],
)
def test_missing_driver_names_the_extra(
    raw: str, module: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _missing(module, monkeypatch)
    with pytest.raises(MissingDependencyError) as info:
        resolve_database_url(raw)
    message = str(info.value)
    assert f'pip install "taskflow-sql[{extra}]"' in message
    assert module in message
    assert isinstance(info.value, ImportError)
    assert isinstance(info.value, TaskflowError)


def test_missing_driver_message_hides_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    _missing("asyncpg", monkeypatch)
    with pytest.raises(MissingDependencyError) as info:
        resolve_database_url("postgresql://alice:s3cret@h/db")
    assert "s3cret" not in str(info.value)


def test_manager_reports_missing_driver_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    _missing("aiomysql", monkeypatch)
    with pytest.raises(MissingDependencyError, match=r"taskflow-sql\[mysql\]"):
        TaskManager(database_url="mysql://root@localhost/app")


# -- URL options written for the sync drivers -----------------------------------------------


def test_psycopg2_style_postgres_options_are_translated_and_typed() -> None:
    target = resolve_database_url(
        "postgresql://u@db/app?sslmode=require&connect_timeout=7&application_name=billing"
        "&command_timeout=30"
    )
    assert dict(target.url.query) == {}
    assert target.connect_args == {
        "ssl": "require",
        "timeout": 7.0,
        "command_timeout": 30.0,
        "server_settings": {"application_name": "billing"},
    }


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("sslmode=sometimes", "use one of disable, allow, prefer, require"),
        ("connect_timeout=soon", "must be a number"),
        ("keepalives=1", "'keepalives' is not understood by asyncpg"),
    ],
)
def test_bad_postgres_options_fail_at_construction(query: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        TaskManager(database_url=f"postgresql://u@db/app?{query}")


def test_mysql_ssl_mode_becomes_a_tls_context() -> None:
    import ssl

    required = resolve_database_url("mysql://u@db/app?ssl-mode=REQUIRED&charset=utf8mb4")
    assert dict(required.url.query) == {"charset": "utf8mb4"}
    context = required.connect_args["ssl"]
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_NONE
    verified = resolve_database_url("mysql://u@db/app?ssl-mode=VERIFY_IDENTITY")
    assert verified.connect_args["ssl"].check_hostname is True
    disabled = resolve_database_url("mysql://u@db/app?ssl-mode=DISABLED")
    assert disabled.connect_args == {} and dict(disabled.url.query) == {}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("ssl-mode=PREFERRED", "cannot fall back"),
        ("ssl-mode=whatever", "use one of DISABLED, REQUIRED"),
        ("read-timeout=5", "'read_timeout'"),
        ("read_timeout=5", "'read_timeout' is not understood by aiomysql"),
    ],
)
def test_bad_mysql_options_fail_at_construction(query: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        TaskManager(database_url=f"mysql://u@db/app?{query}")


def test_several_postgres_hosts_stay_in_the_url() -> None:
    target = resolve_database_url("postgresql://u@/app?host=a:5432&host=b:5433&sslmode=require")
    assert target.url.query["host"] == ("a:5432", "b:5433")
    assert target.connect_args == {"ssl": "require"}


def test_mysql_connect_timeout_is_typed_so_it_wins_over_the_default() -> None:
    assert resolve_database_url("mysql://u@db/app?connect_timeout=30").connect_args == {
        "connect_timeout": 30
    }


def test_mysql_tls_files_go_into_the_context(tmp_path: Any) -> None:
    verified = resolve_database_url(
        "mysql://u@db/app?ssl-mode=VERIFY_IDENTITY&ssl_check_hostname=false"
    )
    assert verified.connect_args["ssl"].check_hostname is False
    assert "ssl_check_hostname" not in verified.url.query
    with pytest.raises(ConfigurationError, match="TLS files cannot be used"):
        resolve_database_url(f"mysql://u@db/app?ssl-mode=VERIFY_CA&ssl_ca={tmp_path}/missing.pem")


@pytest.mark.parametrize(
    ("raw", "prefix", "rendered"),
    [
        ("redis://127.0.0.1:6379/0", "taskflow", "redis://127.0.0.1:6379/0"),
        ("rediss://:tiger@host:6380/2?key_prefix=app1", "app1", "rediss://:***@host:6380/2"),
        ("unix:///run/redis.sock?db=3&key_prefix=a.b", "a.b", "unix:///run/redis.sock?db=3"),
        ("redis+cluster://node1:7000/0?key_prefix=shop", "shop", "redis+cluster://node1:7000/0"),
        ("rediss+cluster://:pw@node1:7000", "taskflow", "rediss+cluster://:***@node1:7000"),
    ],
)
def test_redis_urls_keep_their_options_and_give_up_the_key_prefix(
    raw: str, prefix: str, rendered: str
) -> None:
    target = resolve_database_url(raw)
    assert target.backend == "redis"
    assert target.key_prefix == prefix
    assert target.render() == rendered


def test_a_redis_url_with_a_driver_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="plain redis://"):
        resolve_database_url("redis+hiredis://127.0.0.1/0")


@pytest.mark.parametrize(
    "url", ["redis+cluster://127.0.0.1:7000/2", "rediss+cluster://127.0.0.1:7000?db=1"]
)
def test_a_cluster_url_naming_another_database_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="database 0 only"):
        TaskManager(database_url=url)


def test_a_cluster_url_builds_the_cluster_client_without_connecting() -> None:
    from redis.asyncio.cluster import RedisCluster

    from taskflow.repository.redis import RedisTaskRepository

    manager = TaskManager(database_url="redis+cluster://127.0.0.1:1/0?key_prefix=shop")
    assert isinstance(manager.repository, RedisTaskRepository)
    assert isinstance(manager.repository.client, RedisCluster)
    with pytest.raises(ConfigurationError, match="no_such_option"):
        TaskManager(database_url="redis+cluster://127.0.0.1:1/0?no_such_option=1")
    with pytest.raises(ConfigurationError, match="plain redis://"):
        TaskManager(database_url="unix+cluster:///run/redis.sock")


def test_redis_backend_with_cluster_true_names_a_cluster_url() -> None:
    backend = RedisBackend("rediss://node1:7000/0", prefix="shop", cluster=True)
    assert backend.cluster
    assert backend.database_url == "rediss+cluster://node1:7000/0?key_prefix=shop"
    assert not RedisBackend("redis://node1:7000/0").cluster
    assert RedisBackend("redis+cluster://node1:7000/0").cluster
    with pytest.raises(ConfigurationError, match="cluster=True"):
        RedisBackend("unix:///run/redis.sock", cluster=True)


def test_redis_backend_object_names_its_prefix() -> None:
    manager = TaskManager(snapshot_backend=RedisBackend("redis://127.0.0.1:6379/0", prefix="shop"))
    assert manager.target.backend == "redis"
    assert manager.target.key_prefix == "shop"
    assert RedisBackend(key_prefix="orders").prefix == "orders"


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("redis://127.0.0.1/0?no_such_option=1", "no_such_option"),
        ("redis://127.0.0.1/0?key_prefix=has%20space", "key_prefix"),
    ],
)
def test_bad_redis_options_fail_at_construction(url: str, complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        TaskManager(database_url=url)
