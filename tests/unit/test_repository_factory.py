"""``create_repository``: the configuration in, a repository of the interface out (no I/O)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from taskflow.repository.base import TaskRepository
from taskflow.repository.factory import create_repository
from taskflow.repository.sql import SqlTaskRepository
from taskflow.settings import MEMORY_URL, resolve_database_url


@pytest.fixture
def close_later() -> Iterator[list[TaskRepository]]:
    made: list[TaskRepository] = []
    yield made
    for repository in made:
        assert isinstance(repository, SqlTaskRepository)
        repository.engine.sync_engine.dispose()


def test_a_sql_url_gets_the_sql_repository(close_later: list[TaskRepository]) -> None:
    repository = create_repository(resolve_database_url("postgresql://u@127.0.0.1/db"))
    close_later.append(repository)
    assert isinstance(repository, SqlTaskRepository)
    assert not repository.is_local
    assert not repository.is_process_private


def test_a_sqlite_file_is_local_and_shared(
    tmp_path: Path, close_later: list[TaskRepository]
) -> None:
    repository = create_repository(resolve_database_url(f"sqlite:///{tmp_path / 'tasks.db'}"))
    close_later.append(repository)
    assert repository.is_local
    assert not repository.is_process_private


def test_an_in_memory_database_is_private_to_the_process(
    close_later: list[TaskRepository],
) -> None:
    repository = create_repository(resolve_database_url(MEMORY_URL))
    close_later.append(repository)
    assert repository.is_local
    assert repository.is_process_private


def test_connections_bounds_the_pool(close_later: list[TaskRepository]) -> None:
    repository = create_repository(resolve_database_url("mysql://u@127.0.0.1/db"), connections=2)
    close_later.append(repository)
    assert isinstance(repository, SqlTaskRepository)
    pool = repository.engine.pool
    assert pool.size() == 1  # type: ignore[attr-defined]
    assert pool._max_overflow == 1  # type: ignore[attr-defined]  # no public reader
