"""The questions TaskManager asks its repository instead of checking its type."""

from __future__ import annotations

import pytest

from taskflow.exceptions import TaskArgumentError
from taskflow.repository.base import TaskRepository
from tests.conformance.records import make_record


async def test_a_store_set_up_by_the_suite_needs_no_fix(backend: TaskRepository) -> None:
    problem = await backend.prepare_schema(migrate=False)
    # A test Redis keeps nothing on disk: the one warning allowed is that one.
    assert problem is None or problem.startswith("Redis persists nothing"), problem


def test_a_store_that_touches_nothing_of_the_users_prepares_itself(
    backend: TaskRepository, backend_name: str
) -> None:
    assert backend.prepares_itself is (backend_name in ("sqlite", "redis", "redis-cluster"))


def test_an_error_about_data_is_not_transient(backend: TaskRepository) -> None:
    assert not backend.is_transient(ValueError("not a date"))
    assert not backend.is_transient(TypeError("cannot encode"))


def test_a_shared_store_is_not_private_to_the_process(backend: TaskRepository) -> None:
    assert not backend.is_process_private


async def test_joining_something_that_is_no_transaction_is_refused(
    backend: TaskRepository,
) -> None:
    with pytest.raises(TaskArgumentError):
        await backend.add_to_transaction(object(), make_record(1), lambda: None)
