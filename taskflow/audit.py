"""The audit log's entries: who changed what through the admin, and when.

An entry's columns have fixed widths.  Rather than let each database treat
an oversized value its own way, an entry is checked here before it is
stored (its action and task id) or cut to fit (its actor, which comes from
whatever the auth backend calls the user), and its detail is made
JSON-safe, so every backend stores the same thing.
"""

from __future__ import annotations

import json
from typing import Any

from taskflow.models import AuditEntry, utcnow
from taskflow.repository.base import TaskRepository

AUDIT_ACTION_LENGTH = 32  # taskflow_audit.action
AUDIT_ACTOR_LENGTH = 255  # taskflow_audit.actor
AUDIT_TASK_ID_LENGTH = 36  # taskflow_audit.task_id


async def record_entry(
    repository: TaskRepository,
    action: str,
    *,
    actor: str,
    task_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry, stamped now; values JSON cannot hold are stored as their ``str()``.

    Raises:
        ValueError: ``action`` is empty or longer than 32 characters, or
            ``task_id`` is not a task id.
    """
    if not action or len(action) > AUDIT_ACTION_LENGTH:
        raise ValueError(f"audit action must be 1 to 32 characters, got {action!r}")
    if task_id is not None and len(task_id) > AUDIT_TASK_ID_LENGTH:
        raise ValueError(f"task_id must be a task's id (36 characters), got {task_id!r}")
    stored = json.loads(json.dumps(detail, default=str)) if detail else None
    return await repository.insert_audit(
        action, actor=actor[:AUDIT_ACTOR_LENGTH], task_id=task_id, detail=stored, now=utcnow()
    )


async def list_entries(
    repository: TaskRepository, *, limit: int, before: int | None
) -> list[AuditEntry]:
    """Entries newest first, at most ``limit``, older than entry ``before`` if given.

    Raises:
        ValueError: ``limit`` is below 1.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    return await repository.list_audit(limit=limit, before=before)
