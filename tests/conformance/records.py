"""Task records and instants for the conformance suite: plain values, no backend."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

from taskflow.models import TaskRecord, TaskStatus
from taskflow.repository.base import InstanceInfo

BASE = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
TERMINAL = (TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.INTERRUPTED, TaskStatus.CANCELLED)


def tid(n: int) -> str:
    """A deterministic task id; ids of one shape sort alike in Python and in every store."""
    return f"{n:08x}-0000-7000-8000-{n:012x}"


def at(seconds: float) -> datetime:
    """``BASE`` plus ``seconds``."""
    return BASE + timedelta(seconds=seconds)


def make_record(n: int, **fields: Any) -> TaskRecord:
    """A pending, unowned task created (and due) at ``BASE + n seconds``."""
    created = fields.pop("created_at", at(n))
    values: dict[str, Any] = {
        "task_id": tid(n),
        "func_name": "send_email",
        "status": TaskStatus.PENDING,
        "created_at": created,
        "run_at": created,
        "updated_at": created,
    }
    values.update(fields)
    return TaskRecord(**values)


def held_by(record: TaskRecord, owner: str, *, until: datetime, **fields: Any) -> TaskRecord:
    """``record`` as stored while ``owner`` runs it under a lease ending at ``until``."""
    values: dict[str, Any] = {
        "status": TaskStatus.RUNNING,
        "owner": owner,
        "lease_expires_at": until,
        "start_time": record.created_at,
    }
    values.update(fields)
    return dataclasses.replace(record, **values)


def finished(record: TaskRecord, status: TaskStatus, *, end: datetime, **fields: Any) -> TaskRecord:
    """``record`` as its owner's last write leaves it: terminal, unowned."""
    values: dict[str, Any] = {
        "status": status,
        "start_time": record.created_at,
        "end_time": end,
        "updated_at": end,
        "owner": None,
        "lease_expires_at": None,
    }
    values.update(fields)
    return dataclasses.replace(record, **values)


def instance(name: str, *, seen: datetime, started: datetime | None = None) -> InstanceInfo:
    """An app instance last seen at ``seen``."""
    return InstanceInfo(
        instance_id=name,
        hostname=f"host-{name}",
        pid=1000 + len(name),
        started_at=started or seen,
        heartbeat_at=seen,
        version="1.2.3",
    )
