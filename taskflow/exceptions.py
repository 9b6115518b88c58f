"""The exception tree: everything taskflow raises on purpose derives from ``TaskflowError``."""

from __future__ import annotations


class TaskflowError(Exception):
    """Base class of every error taskflow raises on purpose."""


class ConfigurationError(TaskflowError, ValueError):
    """A setting is invalid: a bad URL, a missing driver, an impossible combination."""


class MissingDependencyError(TaskflowError, ImportError):
    """An optional package is needed for what was asked; the message names the extra."""


class RegistrationError(TaskflowError, ValueError):
    """A decorator was given invalid values, or two functions claim one name."""


class TaskArgumentError(TaskflowError, ValueError):
    """The arguments given to ``add_task()`` cannot be stored or sent to the executor."""


class TaskNotFoundError(TaskflowError, LookupError):
    """No task has that id."""


class FunctionNotRegisteredError(TaskflowError, LookupError):
    """A stored task names a function that this process cannot resolve."""


class BackpressureError(TaskflowError, RuntimeError):
    """The write buffer is full because the database is unreachable; retry later (HTTP 503)."""


class BlockingCallError(TaskflowError, RuntimeError):
    """A blocking call was made on an event loop's thread, where only ``await`` is safe."""


class NotStartedError(TaskflowError, RuntimeError):
    """The manager was used before ``startup()``; wire it with ``init_app()`` or a lifespan."""


class WriterStoppedError(TaskflowError, RuntimeError):
    """The manager shut down before a write was committed (the commit timed out)."""


class CommitTimeoutError(TaskflowError, TimeoutError):
    """``await enqueue()`` got no commit within ``acknowledge_timeout``: the task was not created.

    The database is unreachable or not answering; retry later (HTTP 503 from a route).
    """


class DatabaseUnavailableError(TaskflowError, ConnectionError):
    """A task written at once (one with an idempotency key) met an unreachable database.

    The task was not created; retry later (HTTP 503 with ``Retry-After`` from a route).
    """


class TaskNotAcknowledgedError(TaskflowError, RuntimeError):
    """A task added while a response was streaming could not be committed; the response is cut."""


class InvalidTransitionError(TaskflowError, ValueError):
    """The requested change does not apply to the task's current status."""


class PayloadDecryptionError(TaskflowError, ValueError):
    """A stored payload cannot be decrypted with any configured key."""


def missing_extra(package: str, extra: str, purpose: str) -> MissingDependencyError:
    """Build the error raised when an optional package is absent."""
    return MissingDependencyError(
        f"{purpose} needs the '{package}' package, which is not installed. "
        f'Install it with: pip install "taskflow-sql[{extra}]"'
    )
