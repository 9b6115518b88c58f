"""The audit entry of a change made from the command line, with the OS user as actor.

The admin API records who retried, cancelled or paused what; a change made
from a shell must leave the same trace.  Entries use the admin API's action
names, with ``"via": "cli"`` in their detail so the two can be told apart.
"""

from __future__ import annotations

import getpass
from typing import Any

from taskflow import audit
from taskflow.models import AuditEntry
from taskflow.repository.base import TaskRepository

VIA = "cli"
UNKNOWN_USER = "unknown"


def os_user() -> str:
    """The login name of whoever runs the command (``getpass.getuser()``)."""
    try:
        return getpass.getuser() or UNKNOWN_USER
    except (OSError, KeyError, ImportError):  # no login name, no passwd entry
        return UNKNOWN_USER


async def record(
    repository: TaskRepository,
    action: str,
    *,
    task_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append ``action`` to the audit log as done by the OS user, from the CLI."""
    return await audit.record_entry(
        repository, action, actor=os_user(), task_id=task_id, detail={**(detail or {}), "via": VIA}
    )
