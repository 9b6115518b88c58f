"""Login attempts per client: a few failures per minute, then ``429 Too Many Requests``.

Every attempt counts as a failure from the moment it starts until it
succeeds, so a burst of concurrent guesses cannot slip past the limit while
the password checks are still running.  The counts live in this process: with
N instances a client gets N times the allowance, still far too few guesses to
matter against a real password.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class LoginThrottle:
    """At most ``max_failures`` failed logins per client in any ``window`` seconds."""

    def __init__(
        self,
        *,
        max_failures: int = 5,
        window: float = 60.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self._max_clients = max_clients
        self._clock = clock
        self._attempts: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str) -> deque[float]:
        attempts = self._attempts.get(client)
        if attempts is None:
            attempts = self._attempts[client] = deque()
            while len(self._attempts) > self._max_clients:
                self._attempts.popitem(last=False)
        cutoff = self._clock() - self.window
        while attempts and attempts[0] <= cutoff:
            attempts.popleft()
        return attempts

    def begin(self, client: str) -> int | None:
        """Count an attempt; or, over the limit, return the seconds to wait (``Retry-After``)."""
        attempts = self._recent(client)
        if len(attempts) >= self.max_failures:
            return max(1, math.ceil(attempts[0] + self.window - self._clock()))
        attempts.append(self._clock())
        return None

    def succeeded(self, client: str) -> None:
        """A successful login clears the client's failures."""
        self._attempts.pop(client, None)
