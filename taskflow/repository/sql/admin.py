"""``AdminRecords`` in SQL: the audit log, live instances, dashboard sessions, login attempts.

The admin API's and dashboard's records are delegations to the modules that
hold their SQL (``audit``, ``instances``, ``admin_sessions``,
``login_attempts``); ``SqlTaskRepository`` inherits them from here, so its
own module is about tasks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from taskflow.models import AuditEntry
from taskflow.repository.admin import AdminRecords
from taskflow.repository.sql import admin_sessions, audit, instances, login_attempts
from taskflow.repository.values import AdminSession, InstanceStatus, LoginAttempts


class SqlAdminRecords(AdminRecords):
    """The ``AdminRecords`` methods of ``SqlTaskRepository``, on its engines."""

    # Set by SqlTaskRepository.__init__: reads go to ``engine``, writes to
    # ``write_engine`` (on SQLite, opened with BEGIN IMMEDIATE).
    engine: AsyncEngine
    write_engine: AsyncEngine

    # -- audit log, live instances (SQL in .audit, .instances) --------------------

    async def insert_audit(
        self,
        action: str,
        *,
        actor: str,
        task_id: str | None,
        detail: dict[str, Any] | None,
        now: datetime,
    ) -> AuditEntry:
        return await audit.append(
            self.write_engine, action, actor=actor, task_id=task_id, detail=detail, now=now
        )

    async def list_audit(self, *, limit: int, before: int | None = None) -> list[AuditEntry]:
        return await audit.page(self.engine, limit, before)

    async def list_live_instances(self, *, alive_since: datetime) -> list[InstanceStatus]:
        return await instances.live(self.engine, alive_since)

    # -- admin sessions (SQL in taskflow.repository.sql.admin_sessions) ------------

    async def create_admin_session(self, session: AdminSession) -> None:
        await admin_sessions.create(self.write_engine, session)

    async def get_admin_session(self, session_id: str, *, now: datetime) -> AdminSession | None:
        return await admin_sessions.get_valid(self.engine, session_id, now)

    async def revoke_admin_session(self, session_id: str, *, now: datetime) -> bool:
        return await admin_sessions.revoke(self.write_engine, session_id, now)

    async def purge_admin_sessions(self, *, now: datetime) -> int:
        return await admin_sessions.purge_expired(self.write_engine, now)

    # -- login throttle (SQL in taskflow.repository.sql.login_attempts) ------------

    async def begin_login_attempt(
        self, client: str, user: str, *, now: datetime, since: datetime
    ) -> LoginAttempts:
        return await login_attempts.begin(self.write_engine, client, user, now, since)

    async def forget_login_attempt(self, attempt_id: int) -> None:
        await login_attempts.forget(self.write_engine, attempt_id)

    async def clear_login_attempts(self, client: str, user: str) -> None:
        await login_attempts.clear(self.write_engine, client, user)

    async def purge_login_attempts(self, *, before: datetime) -> int:
        return await login_attempts.purge(self.write_engine, before)
