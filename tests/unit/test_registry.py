"""``@task_manager.task`` validation at decoration time, unique names, import-path resolution."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import pytest

from taskflow import (
    FunctionNotRegisteredError,
    RegistrationError,
    TaskConfig,
    TaskflowError,
    TaskManager,
)
from taskflow.registry import TaskRegistry, import_path
from taskflow.settings import ENV_DATABASE_URL


def sync_job(x: int = 0) -> int:
    return x


async def async_job(x: int = 0) -> int:
    return x


def send_email(address: str) -> str:
    return address


class Helpers:
    @staticmethod
    def nested_static(x: int) -> int:
        return x * 2


module_lambda = lambda: None  # noqa: E731 - a lambda is what this test needs


@pytest.fixture
def manager(monkeypatch: pytest.MonkeyPatch) -> TaskManager:
    monkeypatch.delenv(ENV_DATABASE_URL, raising=False)
    return TaskManager()


# -- invalid values ----------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"retries": -1},
        {"retries": 1.5},
        {"retries": 2.0},
        {"retries": "3"},
        {"retries": None},
        {"retries": True},
        {"retries": False},
        {"delay": -0.1},
        {"delay": -1},
        {"delay": "1"},
        {"delay": True},
        {"delay": math.nan},
        {"delay": math.inf},
        {"backoff": 0.5},
        {"backoff": 0},
        {"backoff": -2.0},
        {"backoff": math.nan},
        {"backoff": math.inf},
        {"backoff": True},
        {"priority": 1.5},
        {"priority": True},
        {"timeout": 0},
        {"timeout": -1.0},
        {"timeout": math.nan},
        {"name": ""},
        {"name": "   "},
        {"name": 42},
        {"name": "x" * 256},
        {"executor": "greenlet"},
    ],
    ids=lambda options: "-".join(f"{k}={v!r}" for k, v in options.items()),
)
def test_invalid_options_are_rejected_at_decoration(
    manager: TaskManager, options: dict[str, Any]
) -> None:
    with pytest.raises(RegistrationError) as info:
        manager.task(**options)(sync_job)
    # The described system raises ValueError; code catching that keeps working.
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, TaskflowError)
    assert "sync_job" not in manager.registry


@pytest.mark.parametrize(
    ("option", "value"),
    [("retries", -1), ("delay", -0.1), ("backoff", 0.5), ("delay", math.inf)],
)
def test_message_names_the_option_and_value(
    manager: TaskManager, option: str, value: float
) -> None:
    with pytest.raises(RegistrationError) as info:
        manager.task(**{option: value})(sync_job)
    assert option in str(info.value)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"retries": 0, "delay": 0, "backoff": 1},
        {"retries": 5, "delay": 0.25, "backoff": 2.0},
        {"delay": 3, "backoff": 1.5},
        {"priority": 10, "timeout": 2.5, "name": "custom"},
    ],
)
def test_valid_options_are_accepted(manager: TaskManager, options: dict[str, Any]) -> None:
    decorated = manager.task(**options)(sync_job)
    assert decorated is sync_job  # returned unchanged
    entry = manager.registry.for_function(sync_job)
    assert entry.registered
    assert entry.name == options.get("name", "sync_job")
    assert entry.config == TaskConfig(**options)


# -- executors ---------------------------------------------------------------


def test_executor_async_needs_a_coroutine_function(manager: TaskManager) -> None:
    with pytest.raises(RegistrationError, match="executor='async'") as info:
        manager.task(executor="async")(sync_job)
    assert "sync_job" in str(info.value)


def test_executor_thread_needs_a_plain_function(manager: TaskManager) -> None:
    with pytest.raises(RegistrationError, match="executor='thread'") as info:
        manager.task(executor="thread")(async_job)
    assert "async_job" in str(info.value)


def test_executor_process_rejects_a_lambda(manager: TaskManager) -> None:
    with pytest.raises(RegistrationError, match="executor='process'"):
        manager.task(executor="process")(module_lambda)
    with pytest.raises(RegistrationError, match="lambda"):
        manager.task(executor="process")(lambda: None)


def test_executor_process_rejects_a_closure(manager: TaskManager) -> None:
    factor = 3

    def closure(x: int) -> int:
        return x * factor

    with pytest.raises(RegistrationError, match="module-level") as info:
        manager.task(executor="process")(closure)
    assert "<locals>" in str(info.value)


def test_matching_executors_are_accepted(manager: TaskManager) -> None:
    manager.task(executor="async")(async_job)
    manager.task(executor="thread")(sync_job)
    manager.task(executor="process", name="proc")(send_email)
    assert manager.registry.get("async_job").executor == "async"  # type: ignore[union-attr]
    assert manager.registry.get("sync_job").executor == "thread"  # type: ignore[union-attr]
    assert manager.registry.get("proc").executor == "process"  # type: ignore[union-attr]


def test_executor_is_detected_from_the_function(manager: TaskManager) -> None:
    manager.task()(async_job)
    manager.task()(sync_job)
    assert manager.registry.for_function(async_job).executor == "async"
    assert manager.registry.for_function(sync_job).executor == "thread"


def test_wrapped_coroutine_function_counts_as_async(manager: TaskManager) -> None:
    @functools.wraps(async_job)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return async_job(*args, **kwargs)

    manager.task(executor="async", name="wrapped")(wrapper)
    assert manager.registry.for_function(wrapper).executor == "async"


# -- names -------------------------------------------------------------------


def test_two_functions_under_one_name_are_rejected(manager: TaskManager) -> None:
    manager.task(name="notify")(send_email)

    def send_email_v2(address: str) -> str:  # a different function
        return address

    with pytest.raises(RegistrationError) as info:
        manager.task(name="notify")(send_email_v2)
    message = str(info.value)
    assert "'notify'" in message
    assert import_path(send_email) in message
    assert import_path(send_email_v2) in message
    assert manager.registry.get("notify").func is send_email  # type: ignore[union-attr]


def test_same_short_name_in_two_places_is_rejected(manager: TaskManager) -> None:
    manager.task()(send_email)

    def make() -> Callable[[str], str]:
        def send_email(address: str) -> str:  # same __name__, other function
            return address

        return send_email

    other = make()
    with pytest.raises(RegistrationError) as info:
        manager.task()(other)
    assert f"{__name__}:send_email" in str(info.value)
    assert "make.<locals>.send_email" in str(info.value)


def test_registering_the_same_function_again_is_fine(manager: TaskManager) -> None:
    manager.task(retries=1)(send_email)
    manager.task(retries=4)(send_email)
    entry = manager.registry.for_function(send_email)
    assert entry.config.retries == 4
    assert len(manager.registry) == 1


def test_registry_lookup_by_name_and_iteration() -> None:
    registry = TaskRegistry()
    registry.register(sync_job, TaskConfig())
    registry.register(async_job, TaskConfig(name="renamed"))
    assert "sync_job" in registry
    assert "renamed" in registry
    assert "async_job" not in registry
    assert {entry.name for entry in registry} == {"sync_job", "renamed"}
    assert registry.get("missing") is None


def test_non_callable_is_rejected() -> None:
    registry = TaskRegistry()
    with pytest.raises(RegistrationError):
        registry.register("not a function", TaskConfig())  # type: ignore[arg-type]
    with pytest.raises(RegistrationError, match="callable"):
        registry.for_function(42)  # type: ignore[arg-type]


# -- unregistered functions and resolution -----------------------------------


def test_unregistered_function_is_named_by_its_import_path() -> None:
    registry = TaskRegistry()
    entry = registry.for_function(send_email)
    assert not entry.registered
    assert entry.name == f"{__name__}:send_email"
    assert entry.config == TaskConfig()
    assert entry.executor == "thread"
    assert registry.for_function(async_job).executor == "async"


def test_resolve_imports_an_unregistered_function_back() -> None:
    registry = TaskRegistry()
    name = registry.for_function(send_email).name
    resolved = registry.resolve(name)
    assert resolved.func is send_email
    assert not resolved.registered


def test_resolve_walks_nested_qualnames() -> None:
    registry = TaskRegistry()
    name = registry.for_function(Helpers.nested_static).name
    assert name == f"{__name__}:Helpers.nested_static"
    assert registry.resolve(name).func(4) == 8


def test_resolve_prefers_the_registered_function(manager: TaskManager) -> None:
    manager.task(name="mail")(send_email)
    entry = manager.registry.resolve("mail")
    assert entry.func is send_email
    assert entry.registered


def test_resolve_of_stdlib_import_path() -> None:
    assert TaskRegistry().resolve("json:dumps").func([1]) == "[1]"


@pytest.mark.parametrize(
    "name",
    [
        "never_registered",
        "no_such_module_xyz:func",
        "json:no_such_function",
        "json:JSONDecodeError.no_such_attribute",
        f"{__name__}:<lambda>",
        f"{__name__}:test_non_callable_is_rejected.<locals>.inner",
        "taskflow:__version__",  # exists, but is not callable
    ],
)
def test_resolve_of_unknown_name_raises(name: str) -> None:
    with pytest.raises(FunctionNotRegisteredError) as info:
        TaskRegistry().resolve(name)
    assert repr(name) in str(info.value)
    assert isinstance(info.value, LookupError)
