"""The retry policy: whether a failed attempt runs again, and how long it waits first.

A policy only answers; it never sleeps.  The runner writes the wait it
returns to the row as ``run_at`` before waiting, so a restart loses no retry
and any instance may run it when it is due.  The settings are checked when
``@task_manager.task()`` or ``@task_manager.schedule()`` runs
(``taskflow.registry``), so a policy built from a registered task's settings
is always valid.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from taskflow.models import ExceptionTypes, JitterName, TaskConfig

ExceptionTuple = tuple[type[BaseException], ...]
# The longest wait a retry is given (1,000 years, in seconds): a run_at
# beyond year 9999 cannot be stored, and computing it failed the recording of
# the attempt, which left the task running until its lease ran out.
LONGEST_WAIT_S = 1000 * 365.25 * 86400


def exception_tuple(types: ExceptionTypes | None) -> ExceptionTuple:
    """``retry_on=`` / ``dont_retry_on=`` as one tuple, the form ``isinstance`` takes."""
    if types is None:
        return ()
    return types if isinstance(types, tuple) else (types,)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one task function retries: how often, how long between, and after which errors.

    ``attempt`` below counts the retries already used: 0 when the first
    attempt fails.  ``retry_on=None`` retries every exception;
    ``dont_retry_on`` wins over ``retry_on``; both match subclasses.
    """

    retries: int = 0
    delay: float = 0.0
    backoff: float = 1.0
    max_delay: float | None = None
    jitter: JitterName | None = None
    retry_on: ExceptionTuple | None = None
    dont_retry_on: ExceptionTuple = ()

    @classmethod
    def from_config(cls, config: TaskConfig, *, retries: int | None = None) -> RetryPolicy:
        """The policy of a function's settings; ``retries`` overrides their count.

        The runner passes the row's own ``max_retries``: a row keeps the count
        it was created with, even if the function's settings changed since.
        """
        return cls(
            retries=config.retries if retries is None else retries,
            delay=config.delay,
            backoff=config.backoff,
            max_delay=config.max_delay,
            jitter=config.jitter,
            retry_on=None if config.retry_on is None else exception_tuple(config.retry_on),
            dont_retry_on=exception_tuple(config.dont_retry_on),
        )

    def retries_error(self, exc: BaseException) -> bool:
        """Whether ``exc`` is an error this policy retries at all (count aside)."""
        if self.dont_retry_on and isinstance(exc, self.dont_retry_on):
            return False
        return self.retry_on is None or isinstance(exc, self.retry_on)

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """Whether the attempt that raised ``exc`` is followed by another one."""
        return attempt < self.retries and self.retries_error(exc)

    def delay_for(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt + 1``.

        ``delay * backoff ** attempt``, capped at ``max_delay`` (and at
        ``LONGEST_WAIT_S`` in any case); jitter then
        spreads the capped wait, so retries of many tasks that failed together
        do not all fall due at the same instant.  ``rng`` is used only with
        jitter.
        """
        wait = min(self._grown(attempt), LONGEST_WAIT_S)
        if self.max_delay is not None:
            wait = min(wait, self.max_delay)
        if self.jitter == "full":
            return rng.uniform(0.0, wait)
        if self.jitter == "equal":
            return wait / 2 + rng.uniform(0.0, wait / 2)
        return wait

    def _grown(self, attempt: int) -> float:
        try:
            # Kept exactly as it was before max_delay and jitter: with only
            # retries, delay and backoff set, the waits are the same numbers
            # (delay=1, backoff=2: 1 s, 2 s, 4 s, as in fastapi-taskflow 0.8.1).
            return self.delay * (self.backoff**attempt)
        except OverflowError:
            # A float power out of range: only a cap makes such a wait usable.
            return math.inf if self.delay else 0.0
