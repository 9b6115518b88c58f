"""``taskflow db upgrade|current|check --url redis+cluster://...`` on a prefix another node serves.

The version key and the persistence check both belong to the primary that
owns the prefix's slot, not to the node the URL names.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from taskflow import cli
from taskflow.repository.redis.repository import FORMAT_VERSION
from taskflow.settings import ENV_DATABASE_URL
from tests.integration.redis_cluster.conftest import prefix_on
from tests.redis_cluster import LocalCluster

pytestmark = pytest.mark.redis

WARNING = "taskflow: warning: Redis persists nothing"


@pytest.fixture(autouse=True)
def _no_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DATABASE_URL, raising=False)


@pytest.fixture
def owner(redis_cluster: LocalCluster) -> Iterator[redis.Redis]:
    """The primary that will hold the test's keys: the last one, not the one the URL names."""
    with redis.Redis(port=redis_cluster.ports[-1]) as client:
        yield client


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = cli.main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_upgrade_current_check_reach_the_slots_owner(
    redis_cluster: LocalCluster, owner: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = prefix_on(redis_cluster, redis_cluster.ports[-1])
    url = f"{redis_cluster.url}?key_prefix={prefix}"
    key = f"{{{prefix}}}:format"
    described = f"format {FORMAT_VERSION} (current) under key prefix {prefix!r}"
    try:
        status, out, err = run(capsys, "db", "check", "--url", url)
        assert status == 1 and "have no format version" in out
        assert err.startswith(WARNING)  # the test nodes persist nothing: the owner says so

        status, out, _ = run(capsys, "db", "upgrade", "--url", url)
        assert (status, out) == (0, f"found no format version; wrote {described}\n")
        assert owner.get(key) == str(FORMAT_VERSION).encode()

        status, out, _ = run(capsys, "db", "current", "--url", url)
        assert (status, out) == (0, f"{described}\n")

        # The owner persisting is what silences the warning, whichever node the URL names.
        owner.config_set("appendonly", "yes")
        try:
            status, out, err = run(capsys, "db", "check", "--url", url)
        finally:
            owner.config_set("appendonly", "no")
        assert (status, out, err) == (0, f"in sync: {described}\n", "")
    finally:
        owner.delete(key)


def test_a_cluster_url_with_a_database_is_a_usage_error(
    redis_cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis+cluster://127.0.0.1:{redis_cluster.ports[0]}/3"
    status, _, err = run(capsys, "db", "current", "--url", url)
    assert status == 2
    assert "database 0 only" in err
