"""``taskflow db ... --url redis://...``: the keys' data-format version, never Alembic.

``upgrade`` writes the version when absent, ``current`` shows it, ``check``
exits 1 unless it is one this taskflow reads; ``downgrade`` and
``rebuild-stats`` do not apply (exit 2).  The persistence warning goes to
stderr and changes no exit status.  One key prefix per test, deleted after.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from taskflow import cli
from taskflow.repository.redis.repository import FORMAT_VERSION
from taskflow.settings import ENV_DATABASE_URL
from tests.conftest import require_server
from tests.integration.test_migrations import run as run_process
from tests.integration.test_migrations import taskflow_cli

pytestmark = pytest.mark.redis

WARNING = "taskflow: warning: Redis persists nothing"


@pytest.fixture
def redis_url() -> str:
    return require_server("redis")


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    name = f"tft-cli-{uuid.uuid4().hex}"
    yield name
    doomed = list(client.scan_iter(match=f"{{{name}}}:*"))
    if doomed:
        client.delete(*doomed)


@pytest.fixture
def url(redis_url: str, prefix: str) -> str:
    return f"{redis_url}?key_prefix={prefix}"


@pytest.fixture(autouse=True)
def _no_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DATABASE_URL, raising=False)


def persists(client: redis.Redis) -> bool:
    appendonly = client.config_get("appendonly")["appendonly"]
    save = client.config_get("save")["save"]
    return not (appendonly == "no" and save == "")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = cli.main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_only_the_warning(err: str, client: redis.Redis) -> None:
    """stderr holds the persistence warning (one line) exactly when the server persists nothing."""
    if persists(client):
        assert err == ""
    else:
        assert err.startswith(WARNING) and err.count("\n") == 1


def format_key(prefix: str) -> str:
    return f"{{{prefix}}}:format"


def test_upgrade_current_check_on_a_fresh_prefix(
    url: str, prefix: str, client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "db", "current", "--url", url)
    assert (status, out) == (0, f"none (no format version under key prefix {prefix!r})\n")
    assert_only_the_warning(err, client)

    status, out, err = run(capsys, "db", "check", "--url", url)
    assert status == 1
    assert out.splitlines() == [
        f"the Redis keys under prefix {prefix!r} have no format version ({format_key(prefix)}); "
        "start once with create_tables=True to initialise them",
        "run `taskflow db upgrade` to write it",
    ]
    assert_only_the_warning(err, client)

    described = f"format {FORMAT_VERSION} (current) under key prefix {prefix!r}"
    status, out, err = run(capsys, "db", "upgrade", "--url", url)
    assert (status, out) == (0, f"found no format version; wrote {described}\n")
    assert_only_the_warning(err, client)
    assert client.get(format_key(prefix)) == str(FORMAT_VERSION).encode()

    status, out, _ = run(capsys, "db", "upgrade", "--url", url)
    assert (status, out) == (0, f"found {described}: nothing to do\n")

    status, out, _ = run(capsys, "db", "current", "--url", url)
    assert (status, out) == (0, f"{described}\n")

    status, out, err = run(capsys, "db", "check", "--url", url)
    assert (status, out) == (0, f"in sync: {described}\n")
    assert_only_the_warning(err, client)


@pytest.mark.parametrize(
    ("stored", "current", "message"),
    [
        (
            str(FORMAT_VERSION + 1),
            f"format {FORMAT_VERSION + 1} (newer than this taskflow's {FORMAT_VERSION})",
            f"newer than this taskflow's {FORMAT_VERSION}: upgrade taskflow",
        ),
        ("junk", "b'junk' (not a format version)", "not a format version"),
    ],
    ids=["newer", "not-a-version"],
)
def test_a_format_this_taskflow_cannot_read(
    stored: str,
    current: str,
    message: str,
    url: str,
    prefix: str,
    client: redis.Redis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client.set(format_key(prefix), stored)

    status, out, _ = run(capsys, "db", "current", "--url", url)
    assert (status, out) == (0, f"{current} under key prefix {prefix!r}\n")

    status, out, _ = run(capsys, "db", "check", "--url", url)
    assert status == 1
    assert message in out

    # upgrade leaves a version it does not know alone, and fails on it.
    status, out, err = run(capsys, "db", "upgrade", "--url", url)
    assert (status, out) == (1, "")
    assert err.startswith("taskflow: error: ") and message in err.splitlines()[0]
    assert client.get(format_key(prefix)) == stored.encode()


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["downgrade", "base"], "there are no migrations to undo"),
        (["rebuild-stats"], "the statistics are kept by the same script"),
    ],
    ids=["downgrade", "rebuild-stats"],
)
def test_commands_that_do_not_apply_to_redis(
    args: list[str], reason: str, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "db", *args, "--url", url)
    assert (status, out) == (2, "")
    assert err.count("\n") == 1
    assert err.startswith(f"taskflow: error: `taskflow db {args[0]}` does not apply to Redis: ")
    assert reason in err


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("redis://127.0.0.1:1/0", 1, "redis://127.0.0.1:1/0: Error "),
        ("unix:///nonexistent/redis.sock?db=0", 1, "unix:///nonexistent/redis.sock?db=0: Error "),
        ("redis://127.0.0.1:6379/0?no_such_option=1", 2, "an option redis-py does not take"),
        ("redis://127.0.0.1:6379/0?key_prefix=a%20b", 2, "key_prefix must be 1 to 64"),
        ("redis://:secret@127.0.0.1:1/0", 1, "redis://:***@127.0.0.1:1/0: "),
    ],
    ids=["unreachable", "no-socket", "bad-option", "bad-prefix", "password-hidden"],
)
def test_redis_errors_are_one_line(
    url: str, status: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for action in ("upgrade", "current", "check"):
        assert cli.main(["db", action, "--url", url]) == status
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.count("\n") == 1, captured.err
        assert captured.err.startswith("taskflow: error: ")
        assert message in captured.err
        assert "Traceback" not in captured.err and "alembic" not in captured.err.lower()
        assert "secret" not in captured.err


def test_the_url_from_the_environment_in_a_process(
    url: str, prefix: str, client: redis.Redis, tmp_path: Path
) -> None:
    result = run_process(
        sys.executable, "-m", "taskflow.cli", "db", "upgrade",
        cwd=tmp_path, env={ENV_DATABASE_URL: url},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("found no format version; wrote format")
    assert "Traceback" not in result.stderr
    result = taskflow_cli("db", "check", "--url", url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert client.get(format_key(prefix)) == str(FORMAT_VERSION).encode()
