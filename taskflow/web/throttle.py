"""Login attempts per client: a few failures per minute, then ``429 Too Many Requests``.

Every attempt counts as a failure from the moment it starts until it
succeeds, so a burst of concurrent guesses cannot slip past the limit while
the password checks are still running.  The attempts are rows in the
database (``taskflow_login_attempts``), so the limit holds for the whole
deployment: N instances allow a client no more guesses than one.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from taskflow.models import utcnow
from taskflow.repository.base import TaskRepository

# Attempts older than the window are deleted now and then, not on every login.
PURGE_EVERY_S = 600.0


def client_digest(client: str) -> str:
    """The stored form of a client's address: fixed length, not the plain text.

    Unsalted, so anyone with the table could test addresses against it:
    treat it like the audit log, which stores addresses as they are.
    """
    return hashlib.sha256(client.encode("utf-8", "surrogatepass")).hexdigest()


class LoginThrottle:
    """At most ``max_failures`` failed logins per client in any ``window`` seconds."""

    def __init__(
        self,
        repository: TaskRepository,
        *,
        max_failures: int = 5,
        window: float = 60.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.repository = repository
        self.max_failures = max_failures
        self.window = window
        self._clock = clock
        self._next_purge = 0.0

    async def begin(self, client: str) -> int | None:
        """Count an attempt; or, over the limit, return the seconds to wait (``Retry-After``)."""
        await self._purge_now_and_then()
        now = self._clock()
        window = timedelta(seconds=self.window)
        attempts = await self.repository.begin_login_attempt(
            client_digest(client), now=now, since=now - window
        )
        if attempts.count <= self.max_failures:
            return None
        # Refused before any password check: it does not count as a guess.
        await self.repository.forget_login_attempt(attempts.attempt_id)
        oldest = attempts.oldest or now
        return max(1, math.ceil((oldest + window - now).total_seconds()))

    async def succeeded(self, client: str) -> None:
        """A successful login clears the client's failures, on every instance."""
        await self.repository.clear_login_attempts(client_digest(client))

    async def _purge_now_and_then(self) -> None:
        moment = time.monotonic()
        if moment >= self._next_purge:
            self._next_purge = moment + PURGE_EVERY_S
            before = self._clock() - timedelta(seconds=self.window)
            await self.repository.purge_login_attempts(before=before)
