"""Login attempts: a few failures per minute on an account, then ``429 Too Many Requests``.

Failures are counted twice: per client address and user name (at most
``max_failures`` in a window), and per client address whatever the name (at
most ``max_client_failures``, so trying many names does not multiply the
guesses).  A successful login forgives only the failures on the account it
logged in to: someone who holds one login cannot use it to clear the count
of guesses at another account's password.

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
# Hex characters of each digest in a stored key (see repository.login_attempts).
DIGEST_CHARS = 32


def _digest(kind: str, value: str) -> str:
    data = f"{kind}\x00{value}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:DIGEST_CHARS]


def client_digest(client: str) -> str:
    """The stored form of a client's address: fixed length, not the plain text.

    Unsalted, so anyone with the table could test addresses against it:
    treat it like the audit log, which stores addresses as they are.
    """
    return _digest("client", client)


def user_digest(username: str) -> str:
    """The stored form of the user name an attempt was for."""
    return _digest("user", username)


class LoginThrottle:
    """At most ``max_failures`` failed logins per client and user name in ``window`` seconds,
    and ``max_client_failures`` per client whatever the name."""

    def __init__(
        self,
        repository: TaskRepository,
        *,
        max_failures: int = 5,
        max_client_failures: int = 20,
        window: float = 60.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.repository = repository
        self.max_failures = max_failures
        self.max_client_failures = max_client_failures
        self.window = window
        self._clock = clock
        self._next_purge = 0.0

    async def begin(self, client: str, username: str) -> int | None:
        """Count an attempt; or, over a limit, return the seconds to wait (``Retry-After``)."""
        await self._purge_now_and_then()
        now = self._clock()
        window = timedelta(seconds=self.window)
        attempts = await self.repository.begin_login_attempt(
            client_digest(client), user_digest(username), now=now, since=now - window
        )
        waits = []
        if attempts.count > self.max_failures:
            waits.append(attempts.oldest or now)
        if attempts.client_count > self.max_client_failures:
            waits.append(attempts.client_oldest or now)
        if not waits:
            return None
        # Refused before any password check: it does not count as a guess.
        await self.repository.forget_login_attempt(attempts.attempt_id)
        return max(1, math.ceil((max(waits) + window - now).total_seconds()))

    async def succeeded(self, client: str, username: str) -> None:
        """A login clears the client's failures on that user name, on every instance."""
        await self.repository.clear_login_attempts(client_digest(client), user_digest(username))

    async def _purge_now_and_then(self) -> None:
        moment = time.monotonic()
        if moment >= self._next_purge:
            self._next_purge = moment + PURGE_EVERY_S
            before = self._clock() - timedelta(seconds=self.window)
            await self.repository.purge_login_attempts(before=before)
