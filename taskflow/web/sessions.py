"""Server-side admin sessions: random cookie tokens, stored only as digests in the database.

Any instance can check any cookie and a logout revokes the session for all of
them, because the database (not a per-process signing key) holds the truth:
logins never bounce between instances, with or without ``secret_key``.

A validated session is cached in-process for ``cache_seconds`` so a page that
fires a dozen API calls costs one query.  Revoking drops the entry at once on
the revoking instance; other instances notice within ``cache_seconds``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from taskflow.models import utcnow
from taskflow.repository.base import AdminSession, TaskRepository
from taskflow.web.access import Role

COOKIE_NAME = "taskflow_session"
MIN_SECRET_KEY = 32
# secrets.token_urlsafe(32) gives 43 characters; anything else is not ours.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
PURGE_EVERY_S = 600.0


@dataclass(frozen=True)
class NewSession:
    """A session just created: the cookie's token (shown once, never stored) and its row."""

    token: str
    session: AdminSession


class SessionStore:
    """Creates, validates and revokes admin sessions through the repository.

    With ``secret_key``, the stored id and the CSRF token are HMAC-SHA256 of
    the cookie's token under that key, so even someone who can write to the
    sessions table cannot mint a cookie that matches a row.  Without it they
    are plain SHA-256 digests, which is as strong against a read-only copy of
    the table.
    """

    def __init__(
        self,
        repository: TaskRepository,
        *,
        lifetime: timedelta,
        secret_key: str | None = None,
        cache_seconds: float = 5.0,
        cache_size: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.repository = repository
        self.lifetime = lifetime
        self.cache_seconds = cache_seconds
        self._key = secret_key.encode("utf-8") if secret_key else None
        self._cache: OrderedDict[str, tuple[AdminSession, float]] = OrderedDict()
        self._cache_size = cache_size
        self._clock = clock
        self._next_purge = 0.0

    def _digest(self, purpose: bytes, token: str) -> str:
        message = purpose + b":" + token.encode("ascii")
        if self._key is None:
            return hashlib.sha256(message).hexdigest()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def session_id(self, token: str) -> str:
        """The id under which the session of ``token`` is stored."""
        return self._digest(b"session", token)

    async def create(self, username: str, role: Role) -> NewSession:
        """Store a fresh session for ``username`` and return its one-time token."""
        token = secrets.token_urlsafe(32)
        now = utcnow()
        session = AdminSession(
            session_id=self.session_id(token),
            username=username,
            role=role,
            csrf_token=self._digest(b"csrf", token),
            created_at=now,
            expires_at=now + self.lifetime,
        )
        await self.repository.create_admin_session(session)
        await self._purge_now_and_then()
        return NewSession(token, session)

    async def get(self, token: str | None) -> AdminSession | None:
        """The live session of ``token``, or None (no token, unknown, expired or revoked)."""
        if not token or not _TOKEN_SHAPE.fullmatch(token):
            return None
        session_id = self.session_id(token)
        now = utcnow()
        cached = self._cache.get(session_id)
        if cached is not None:
            session, fresh_until = cached
            if self._clock() < fresh_until and session.expires_at > now:
                return session
            del self._cache[session_id]
        found = await self.repository.get_admin_session(session_id, now=now)
        if found is not None and self.cache_seconds > 0:
            self._cache[session_id] = (found, self._clock() + self.cache_seconds)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return found

    async def revoke(self, session: AdminSession) -> None:
        """End ``session`` for every instance; this one stops accepting it at once."""
        self._cache.pop(session.session_id, None)
        await self.repository.revoke_admin_session(session.session_id, now=utcnow())

    async def _purge_now_and_then(self) -> None:
        # Logins are rare, so purging on a login (at most every ten minutes per
        # instance) keeps the table small without a background job.
        now = self._clock()
        if now >= self._next_purge:
            self._next_purge = now + PURGE_EVERY_S
            await self.repository.purge_admin_sessions(now=utcnow())
