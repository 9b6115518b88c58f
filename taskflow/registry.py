"""Registration of task functions under stable names, validated at decoration time.

A stored task names its function; any process that imports the same app must
resolve that name to the same function.  So names are unique (two functions
may not share one), and an unregistered function is stored under its import
path (``module:qualname``), which a later process can import.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from taskflow.exceptions import FunctionNotRegisteredError, RegistrationError
from taskflow.models import JITTERS, ExceptionTypes, TaskConfig

EXECUTORS = ("async", "thread", "process")
MAX_NAME_LENGTH = 255


@dataclass(frozen=True)
class RegisteredTask:
    """A function, the name it is stored under, and its settings."""

    name: str
    func: Callable[..., Any]
    config: TaskConfig
    registered: bool = True
    executor: str = field(init=False)

    def __post_init__(self) -> None:
        # The executor this function runs on: the configured one, else by its kind.
        kind = self.config.executor or ("async" if is_async_callable(self.func) else "thread")
        object.__setattr__(self, "executor", kind)


def is_async_callable(func: Callable[..., Any]) -> bool:
    target = inspect.unwrap(func)
    if inspect.iscoroutinefunction(target):
        return True
    call = getattr(target, "__call__", None)  # noqa: B004 - we want the bound __call__ of objects
    return not inspect.isfunction(target) and inspect.iscoroutinefunction(call)


def import_path(func: Callable[..., Any]) -> str:
    """``module:qualname`` of a callable: how a later process finds it again."""
    module = getattr(func, "__module__", None) or "__main__"
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
    return f"{module}:{qualname}"


def _is_module_level(func: Callable[..., Any]) -> bool:
    qualname = getattr(func, "__qualname__", "")
    return "<locals>" not in qualname and "<lambda>" not in qualname


def _check_number(name: str, value: Any, *, minimum: float, integer: bool = False) -> None:
    valid = isinstance(value, int) or (not integer and isinstance(value, float))
    if isinstance(value, bool) or not valid:
        kind = "an integer" if integer else "a number"
        raise RegistrationError(f"{name} must be {kind}, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise RegistrationError(f"{name} must be a finite number >= {minimum}, got {value!r}")
    if number < minimum:
        raise RegistrationError(f"{name} must be >= {minimum}, got {value!r}")


def validate_config(func: Callable[..., Any], config: TaskConfig) -> None:
    """Reject impossible settings when the decorator runs, not when the task does."""
    if not callable(func):
        raise RegistrationError(f"@task decorates a function, got {func!r}")
    _check_number("retries", config.retries, minimum=0, integer=True)
    _check_number("delay", config.delay, minimum=0)
    _check_number("backoff", config.backoff, minimum=1)
    _check_retry_options(config)
    if config.priority is not None:
        _check_number("priority", config.priority, minimum=-(2**31), integer=True)
    if config.timeout is not None:
        _check_number("timeout", config.timeout, minimum=0)
        if config.timeout == 0:
            raise RegistrationError("timeout must be > 0 seconds, or None for no timeout")
    if config.name is not None and (not isinstance(config.name, str) or not config.name.strip()):
        raise RegistrationError(f"name must be a non-empty string, got {config.name!r}")
    validate_executor(func, config.executor)


def _check_retry_options(config: TaskConfig) -> None:
    """``max_delay``, ``jitter``, ``retry_on`` and ``dont_retry_on`` (see ``runtime.retry``)."""
    if config.max_delay is not None:
        _check_number("max_delay", config.max_delay, minimum=0)
        if config.max_delay < config.delay:
            raise RegistrationError(
                f"max_delay={config.max_delay!r} is below delay={config.delay!r}, so it would "
                "shorten even the first wait: raise max_delay to at least delay, or lower delay"
            )
    if config.jitter is not None and config.jitter not in JITTERS:
        raise RegistrationError(
            f"jitter must be 'full', 'equal' or None (no jitter), got {config.jitter!r}"
        )
    retried = _exception_types("retry_on", config.retry_on)
    if config.retry_on is not None and not retried:
        raise RegistrationError(
            "retry_on=() would retry nothing: pass None to retry every exception, "
            "or retries=0 never to retry"
        )
    never = _exception_types("dont_retry_on", config.dont_retry_on)
    for kind in retried:
        if kind in never:
            raise RegistrationError(
                f"{kind.__name__} is in both retry_on and dont_retry_on (dont_retry_on wins, "
                "so it would never be retried): keep it in one of them"
            )


def _exception_types(name: str, value: ExceptionTypes | None) -> tuple[type[Exception], ...]:
    if value is None:
        return ()
    kinds: tuple[object, ...] = value if isinstance(value, tuple) else (value,)
    checked: list[type[Exception]] = []
    for kind in kinds:
        if not isinstance(kind, type) or not issubclass(kind, BaseException):
            raise RegistrationError(
                f"{name} takes an exception class or a tuple of them, as except does "
                f"(e.g. {name}=(ConnectionError, TimeoutError)); got {value!r}"
            )
        if not issubclass(kind, Exception):
            raise RegistrationError(
                f"{name} takes subclasses of Exception; {kind.__name__} is not one, and "
                "never reaches a retry: cancellation and shutdown are recorded, not retried"
            )
        checked.append(kind)
    return tuple(checked)


def validate_executor(func: Callable[..., Any], executor: str | None) -> None:
    """Check that ``func`` can run on ``executor`` (fastapi-taskflow's rules)."""
    if executor is None:
        return
    if executor not in EXECUTORS:
        raise RegistrationError(f"executor must be one of {EXECUTORS} or None, got {executor!r}")
    is_async = is_async_callable(func)
    if executor == "async" and not is_async:
        raise RegistrationError(
            f"executor='async' needs a coroutine function; {import_path(func)} is sync: "
            "use executor='thread' or drop executor= to auto-detect"
        )
    if executor == "thread" and is_async:
        raise RegistrationError(
            f"executor='thread' needs a plain function; {import_path(func)} is async: "
            "use executor='async' or drop executor= to auto-detect"
        )
    if executor == "process":
        _check_process_target(func)


def _check_process_target(func: Callable[..., Any]) -> None:
    """A worker process must be able to import ``func`` by name (lambdas and closures cannot be).

    Even with cloudpickle, which could ship a closure by value, a closure's
    captured state would be a frozen copy in the worker: a source of quiet
    bugs, so fastapi-taskflow's rule (module-level functions only) stands.
    """
    path = import_path(func)
    fix = "define it with def at the top level of an importable module and decorate that"
    if inspect.ismethod(func):
        raise RegistrationError(
            f"executor='process' needs a module-level function; {path} is a bound method, "
            f"whose instance a worker process cannot share: {fix}"
        )
    if not _is_module_level(func):
        kind = "a lambda" if "<lambda>" in path else "a nested function or closure"
        raise RegistrationError(
            f"executor='process' needs a module-level function; {path} is {kind}, "
            f"which a worker process cannot import: {fix}"
        )


class TaskRegistry:
    """Name -> function map shared by every dispatch path of one manager."""

    def __init__(self) -> None:
        self._by_name: dict[str, RegisteredTask] = {}
        self._by_func: dict[int, RegisteredTask] = {}
        # Undecorated functions seen by add_task, so this process can run their
        # rows again (after a restart of the manager) even when not importable.
        self._seen: dict[str, RegisteredTask] = {}

    def register(self, func: Callable[..., Any], config: TaskConfig) -> RegisteredTask:
        """Register ``func``; a name already taken by a different function is an error."""
        validate_config(func, config)
        name = config.name or getattr(func, "__name__", None) or import_path(func)
        if len(name) > MAX_NAME_LENGTH:
            raise RegistrationError(f"task name is longer than {MAX_NAME_LENGTH} characters")
        existing = self._by_name.get(name)
        if existing is not None and import_path(existing.func) != import_path(func):
            raise RegistrationError(
                f"two functions are registered as {name!r}: {import_path(existing.func)} and "
                f"{import_path(func)}. Give one of them a distinct name=..."
            )
        if existing is not None:
            self._by_func.pop(id(existing.func), None)
        entry = RegisteredTask(name=name, func=func, config=config)
        self._by_name[name] = entry
        self._by_func[id(func)] = entry
        return entry

    def for_function(self, func: Callable[..., Any]) -> RegisteredTask:
        """The registration of ``func``, or default settings under its import path."""
        entry = self._by_func.get(id(func))
        if entry is not None and entry.func is func:
            return entry
        if not callable(func):
            raise RegistrationError(
                f"add_task() needs a callable, got {type(func).__name__} {func!r}"
            )
        name = import_path(func)
        seen = self._seen.get(name)
        if seen is not None and seen.func is func:
            return seen
        entry = RegisteredTask(name=name, func=func, config=TaskConfig(), registered=False)
        self._seen[name] = entry
        return entry

    def get(self, name: str) -> RegisteredTask | None:
        return self._by_name.get(name)

    # -- fastapi-taskflow's lookups ---------------------------------------------

    def get_config(self, func: Callable[..., Any]) -> TaskConfig | None:
        """The settings ``func`` was registered with, or None when it was not decorated."""
        entry = self._by_func.get(id(func))
        return entry.config if entry is not None and entry.func is func else None

    def get_by_name(self, name: str) -> tuple[Callable[..., Any], TaskConfig] | None:
        """``(func, config)`` of the function registered as ``name``, or None."""
        entry = self._by_name.get(name)
        return None if entry is None else (entry.func, entry.config)

    def is_registered(self, func: Callable[..., Any]) -> bool:
        """Whether ``func`` was decorated with ``@task_manager.task()`` or ``.schedule()``."""
        return self.get_config(func) is not None

    def resolve(self, name: str) -> RegisteredTask:
        """The function stored under ``name``: registered, or importable by its path."""
        entry = self._by_name.get(name) or self._seen.get(name)
        if entry is not None:
            return entry
        func = _import_callable(name)
        if func is None:
            raise FunctionNotRegisteredError(
                f"no task function named {name!r} is registered in this process: import the "
                "module that defines it (decorated with @task_manager.task) before startup"
            )
        return RegisteredTask(name=name, func=func, config=TaskConfig(), registered=False)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[RegisteredTask]:
        return iter(list(self._by_name.values()))

    def __len__(self) -> int:
        return len(self._by_name)


def _import_callable(path: str) -> Callable[..., Any] | None:
    module_name, sep, qualname = path.partition(":")
    if not sep or "<" in qualname:
        return None
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError):
        return None
    return target if callable(target) else None
