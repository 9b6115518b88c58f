"""fastapi-taskflow options that do nothing here warn once each, at the caller's line."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from taskflow import TaskManager
from taskflow.backends import RedisBackend
from taskflow.settings import ENV_DATABASE_URL

THIS_FILE = __file__


@pytest.fixture(autouse=True)
def _no_env_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DATABASE_URL, raising=False)


@pytest.mark.parametrize(
    ("option", "value", "reason"),
    [
        ("snapshot_interval", 60.0, "every task state change is written"),
        ("merged_list_ttl", 5.0, "read from the database every instance shares"),
        ("requeue_pending", True, "pending tasks are always run again"),
        ("requeue_pending", False, "pending tasks are always run again"),
    ],
)
def test_each_manager_option_warns_once_with_its_reason(
    option: str, value: Any, reason: str
) -> None:
    with pytest.warns(DeprecationWarning, match=f"{option} is deprecated") as caught:
        TaskManager(**{option: value})
    assert len(caught) == 1
    assert reason in str(caught[0].message)
    assert caught[0].filename == THIS_FILE  # points at the user's call


def test_every_option_given_warns_for_itself() -> None:
    with pytest.warns(DeprecationWarning) as caught:
        TaskManager(snapshot_interval=1.0, merged_list_ttl=1.0, requeue_pending=True)
    named = sorted(str(w.message).split(" ", 1)[0] for w in caught)
    assert named == ["merged_list_ttl", "requeue_pending", "snapshot_interval"]


@pytest.mark.parametrize("value", [True, False])
def test_persist_warns_at_the_decorator(value: bool) -> None:
    manager = TaskManager()
    with pytest.warns(DeprecationWarning, match="persist is deprecated") as caught:

        @manager.task(persist=value)
        def job() -> None:
            pass

    assert len(caught) == 1
    assert "every task is a database row" in str(caught[0].message)
    assert caught[0].filename == THIS_FILE


def test_redis_backend_ttl_warns() -> None:
    with pytest.warns(DeprecationWarning, match="ttl is deprecated") as caught:
        RedisBackend("redis://localhost:6379/0", ttl=3600)
    assert "retention_days" in str(caught[0].message)
    assert caught[0].filename == THIS_FILE


def test_nothing_warns_when_none_is_given() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        manager = TaskManager()

        @manager.task(retries=1)
        def job() -> None:
            pass

        RedisBackend("redis://localhost:6379/0")
    assert manager.snapshot_interval == 60.0 and manager.requeue_pending is False
