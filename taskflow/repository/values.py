"""The value types ``TaskRepository`` takes and returns: plain data, no storage.

Every backend fills the same shapes, so the runtime and web layers never see
a row or a driver type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from taskflow.models import TaskLogEntry, TaskRecord, TaskStatus


@dataclass
class WriteBatch:
    """One group commit: new rows, state changes and log lines, applied in one transaction.

    ``updates`` carry the full mutable state of each task, guarded by the
    record's ``lease_epoch``; the writer has already coalesced several changes
    of one task into the last.
    """

    inserts: list[TaskRecord] = field(default_factory=list)
    updates: list[TaskRecord] = field(default_factory=list)
    logs: list[TaskLogEntry] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.inserts) + len(self.updates) + len(self.logs)


@dataclass(frozen=True)
class BatchOutcome:
    """What a group commit could not apply.

    ``fenced``: updates whose lease had moved on (another owner, or cancelled).
    ``rejected``: new rows the database refused outright; those tasks must not run.
    """

    fenced: frozenset[str] = frozenset()
    rejected: frozenset[str] = frozenset()


@dataclass(frozen=True)
class TaskQuery:
    """Filters and keyset position for listing tasks, newest first."""

    status: Sequence[TaskStatus] | None = None
    func_name: str | None = None
    source: str | None = None
    created_since: datetime | None = None
    created_until: datetime | None = None
    search: str | None = None
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True)
class TaskPage:
    """One page of tasks and the cursor of the next page (None on the last)."""

    items: list[TaskRecord]
    next_cursor: str | None


@dataclass(frozen=True)
class InstanceInfo:
    """A running app instance, as registered in ``taskflow_instances``."""

    instance_id: str
    hostname: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    version: str | None = None
    stopped_at: datetime | None = None


@dataclass(frozen=True)
class InstanceStatus:
    """A live instance and how many tasks it is running right now."""

    instance: InstanceInfo
    running: int


@dataclass(frozen=True)
class RetrySource:
    """What deciding on a retry needs to know of a task, without its arguments."""

    task_id: str
    func_name: str
    status: TaskStatus
    payload_format: str
    created_at: datetime
    retried_from: str | None = None


@dataclass(frozen=True)
class ReplayPage:
    """One page of a dead-letter replay: tasks in ``status`` created in the window, newest first.

    ``after`` is the last task of the previous page (keyset pagination).
    """

    status: TaskStatus
    created_before: datetime
    created_since: datetime | None = None
    func_name: str | None = None
    after: RetrySource | None = None
    limit: int = 500


@dataclass(frozen=True)
class RetryCopy:
    """A retry to create: ``original_id``'s row copied as ``new_task_id``, pending, unowned."""

    original_id: str
    new_task_id: str
    max_retries: int


@dataclass(frozen=True)
class AdminSession:
    """A dashboard login as stored in ``taskflow_admin_sessions``.

    ``session_id`` is a digest of the cookie's token: the token itself is
    never stored, so reading the table does not let anyone log in.
    """

    session_id: str
    username: str
    role: str
    csrf_token: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class LoginAttempts:
    """A login attempt just recorded, and its rank among the attempts in the window.

    ``count`` counts the client's attempts on the same user name in the
    window up to this one (by id), this one included; ``oldest`` is the first
    of them.  ``client_count`` and ``client_oldest`` do the same for every
    attempt of the client, whatever the user name.
    """

    attempt_id: int
    count: int
    oldest: datetime | None
    client_count: int = 0
    client_oldest: datetime | None = None
