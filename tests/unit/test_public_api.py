"""The public surface: ``taskflow.__all__`` is importable, sorted and documented."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import taskflow

PUBLIC = [name for name in taskflow.__all__ if name != "__version__"]
PUBLIC_CLASSES = [name for name in PUBLIC if inspect.isclass(getattr(taskflow, name, None))]


def test_all_is_sorted_and_unique() -> None:
    assert taskflow.__all__ == sorted(taskflow.__all__)
    assert len(set(taskflow.__all__)) == len(taskflow.__all__)


@pytest.mark.parametrize("name", taskflow.__all__)
def test_every_name_is_importable(name: str) -> None:
    assert hasattr(taskflow, name), f"taskflow.__all__ lists {name!r}, which does not exist"


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, Any] = {}
    exec("from taskflow import *", namespace)
    namespace.pop("__builtins__", None)
    assert set(namespace) == set(taskflow.__all__)


def test_version_is_a_string() -> None:
    assert isinstance(taskflow.__version__, str) and taskflow.__version__


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_has_a_docstring(name: str) -> None:
    obj = getattr(taskflow, name)
    doc = inspect.getdoc(obj)
    assert doc and doc.strip(), f"taskflow.{name} has no docstring"
    # One summary line first (STYLE.md), not a blank or a wall of text.
    first_line = doc.strip().splitlines()[0]
    assert first_line.strip(), f"taskflow.{name}'s docstring starts with a blank line"


def _own_public_members(cls: type) -> list[tuple[str, Any]]:
    """Public methods and properties defined by taskflow itself (not inherited from stdlib)."""
    members = []
    for klass in cls.__mro__:
        if not klass.__module__.startswith("taskflow"):
            continue
        for attr, value in vars(klass).items():
            if attr.startswith("_"):
                continue
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if inspect.isfunction(value) or isinstance(value, property):
                members.append((f"{klass.__name__}.{attr}", value))
    return members


@pytest.mark.parametrize("name", PUBLIC_CLASSES)
def test_public_methods_and_properties_have_docstrings(name: str) -> None:
    cls = getattr(taskflow, name)
    undocumented = [
        qualified
        for qualified, member in _own_public_members(cls)
        if not (member.__doc__ or "").strip()
    ]
    assert not undocumented, f"public members without a docstring: {undocumented}"


def test_exceptions_follow_the_naming_rule_and_share_one_base() -> None:
    for name in PUBLIC_CLASSES:
        cls = getattr(taskflow, name)
        if issubclass(cls, BaseException):
            assert name.endswith("Error"), name
            assert issubclass(cls, taskflow.TaskflowError), name


def test_described_core_names_exist() -> None:
    # The described system's core names that users import on the first day.
    for name in (
        "TaskAdmin",
        "TaskManager",
        "ManagedBackgroundTasks",
        "TaskStatus",
        "TaskRecord",
        "TaskConfig",
        "SnapshotBackend",
        "SqliteBackend",
        "RedisBackend",
        "TaskArgumentError",
        "task_log",
        "TaskContext",
        "get_task_context",
    ):
        assert name in taskflow.__all__, name


def test_task_argument_error_is_a_value_error() -> None:
    # The described system raises ValueError subclasses; callers may catch those.
    assert issubclass(taskflow.TaskArgumentError, ValueError)
    assert issubclass(taskflow.RegistrationError, ValueError)
    assert issubclass(taskflow.ConfigurationError, ValueError)
    assert issubclass(taskflow.MissingDependencyError, ImportError)


def test_described_module_paths_for_loggers_and_the_json_router() -> None:
    import taskflow.loggers
    import taskflow.observe
    import taskflow.router
    from taskflow.web.routes import create_router

    assert set(taskflow.loggers.__all__) == {
        "TaskObserver",
        "LogEvent",
        "LifecycleEvent",
        "LoggerChain",
        "FileLogger",
        "InMemoryLogger",
        "StdoutLogger",
    }
    for name in taskflow.loggers.__all__:
        assert getattr(taskflow.loggers, name) is getattr(taskflow.observe, name)
    assert taskflow.router.create_router is create_router
