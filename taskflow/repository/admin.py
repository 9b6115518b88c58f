"""``AdminRecords``: the part of ``TaskRepository`` that serves the admin API and dashboard.

The audit log, the live instances, dashboard logins and the login throttle
are records every backend keeps besides the tasks themselves.  They have an
interface of their own so that ``base.py`` stays about tasks, and so that a
backend can implement them in one place; ``TaskRepository`` inherits it.
"""

from __future__ import annotations

import abc
from datetime import datetime
from typing import Any

from taskflow.models import AuditEntry
from taskflow.repository.values import AdminSession, InstanceStatus, LoginAttempts


class AdminRecords(abc.ABC):
    """Async storage of the audit log, dashboard sessions and login attempts."""

    # -- admin bookkeeping (SQL: repository/sql/audit, instances) -------------
    @abc.abstractmethod
    async def insert_audit(
        self,
        action: str,
        *,
        actor: str,
        task_id: str | None,
        detail: dict[str, Any] | None,
        now: datetime,
    ) -> AuditEntry:
        """Append one audit entry and return it with its id."""

    @abc.abstractmethod
    async def list_audit(self, *, limit: int, before: int | None = None) -> list[AuditEntry]:
        """Audit entries newest first; only those with ``entry_id < before`` if given."""

    @abc.abstractmethod
    async def list_live_instances(self, *, alive_since: datetime) -> list[InstanceStatus]:
        """Instances not stopped and seen since ``alive_since``, with their running task counts."""

    # -- admin sessions (SQL: repository/sql/admin_sessions) ------------------
    @abc.abstractmethod
    async def create_admin_session(self, session: AdminSession) -> None:
        """Store a new dashboard login."""

    @abc.abstractmethod
    async def get_admin_session(self, session_id: str, *, now: datetime) -> AdminSession | None:
        """The session with that id, unless it expired by ``now`` or was revoked."""

    @abc.abstractmethod
    async def revoke_admin_session(self, session_id: str, *, now: datetime) -> bool:
        """Revoke a session for every instance; False if it was unknown or already revoked."""

    @abc.abstractmethod
    async def purge_admin_sessions(self, *, now: datetime) -> int:
        """Delete sessions that expired by ``now``; returns how many."""

    # -- login throttle (SQL: repository/sql/login_attempts) ------------------
    @abc.abstractmethod
    async def begin_login_attempt(
        self, client: str, user: str, *, now: datetime, since: datetime
    ) -> LoginAttempts:
        """Record an attempt by ``client`` on ``user``; rank it after ``since``, anywhere.

        Both are digests of 32 hex characters (``taskflow.web.throttle``).
        """

    @abc.abstractmethod
    async def forget_login_attempt(self, attempt_id: int) -> None:
        """Remove one recorded attempt (it was refused, so it does not count)."""

    @abc.abstractmethod
    async def clear_login_attempts(self, client: str, user: str) -> None:
        """Remove the client's attempts on ``user``: it logged in as that user."""

    @abc.abstractmethod
    async def purge_login_attempts(self, *, before: datetime) -> int:
        """Delete attempts made at or before ``before``; returns how many."""
