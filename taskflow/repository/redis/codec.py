"""How a ``TaskRecord`` and its log lines are stored in Redis hashes and lists.

Every part of the Redis backend (the write path, the reads, retention,
retries, schedules) reads and writes the same hash layout, so the one
conversion lives here.  A task's hash has one field per column of the SQL
table (``status``, ``attempt``, ``started_at``...), holding bytes: text as
UTF-8, JSON values (tags, args, kwargs, result) as JSON text, timestamps as
integer microseconds since the epoch (UTC), numbers in decimal.  A value
that is None is no field at all, so a Lua script can test for it with a
plain ``nil``.

The records sent to the Lua library use the long names and every value;
the library stores them under the short names of ``fields.py`` and leaves
out what the hash implies, and ``record_from_hash`` puts it back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from taskflow.models import TaskLogEntry, TaskRecord, TaskStatus
from taskflow.repository.redis.fields import DEFAULTS, STORED_BYTES

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


Field = str | bytes | int | float


def to_us(value: datetime) -> int:
    """Microseconds since the epoch: exact integer arithmetic, no float rounding."""
    return (value - EPOCH) // _MICROSECOND


def from_us(value: int | bytes | str) -> datetime:
    """The aware UTC datetime of a stored microsecond count."""
    return EPOCH + timedelta(microseconds=int(value))


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8")


def _when(value: bytes | None) -> datetime | None:
    return None if value is None else from_us(value)


def _json_or_none(value: bytes | None) -> Any:
    return None if value is None else json.loads(value)


def update_fields(record: TaskRecord) -> tuple[dict[str, Field], list[str]]:
    """The mutable part of a task: fields to set, and the fields that are now None."""
    values: dict[str, Field | None] = {
        "status": record.status.value,
        "executor": record.executor,
        "attempt": record.retries_used,
        "run_at": to_us(record.run_at),
        "updated_at": to_us(record.updated_at),
        "started_at": None if record.start_time is None else to_us(record.start_time),
        "finished_at": None if record.end_time is None else to_us(record.end_time),
        "duration_ms": None if record.duration_ms is None else float(record.duration_ms),
        "error": record.error,
        "stacktrace": record.stacktrace,
        "result": None if record.result is None else _encode_json(record.result),
        "owner": record.owner,
        "lease_expires_at": (
            None if record.lease_expires_at is None else to_us(record.lease_expires_at)
        ),
    }
    sets = {name: value for name, value in values.items() if value is not None}
    return sets, [name for name, value in values.items() if value is None]


def insert_fields(record: TaskRecord) -> dict[str, Field]:
    """Every non-None field of a new task's hash."""
    fields, _ = update_fields(record)
    fixed: dict[str, Field | None] = {
        "func_name": record.func_name,
        "source": record.source,
        "priority": record.priority,
        "max_retries": record.max_retries,
        "created_at": to_us(record.created_at),
        "tags": _encode_json(record.tags) if record.tags else None,
        "args": _encode_json(list(record.args)) if record.args_stored else None,
        "kwargs": _encode_json(dict(record.kwargs)) if record.args_stored else None,
        "payload": record.payload,
        "payload_format": record.payload_format,
        "lease_epoch": record.lease_epoch,
        "idempotency_key": record.idempotency_key,
        "retried_from": record.retried_from,
        "schedule_name": record.schedule_name,
        "scheduled_for": None if record.scheduled_for is None else to_us(record.scheduled_for),
    }
    fields.update({name: value for name, value in fixed.items() if value is not None})
    return fields


def flat_fields(fields: Mapping[str, Field]) -> list[Field]:
    """``fields`` as the count-then-pairs argument list the Lua library reads."""
    flat: list[Field] = [len(fields)]
    for name, value in fields.items():
        flat.append(name)
        flat.append(value)
    return flat


def as_mapping(flat: list[bytes]) -> dict[bytes, bytes]:
    """An HGETALL reply returned by a Lua script (a flat list) as a mapping."""
    return dict(zip(flat[0::2], flat[1::2], strict=True))


def record_from_hash(row: Mapping[bytes, bytes], task_id: str) -> TaskRecord:
    """Task ``task_id`` from its stored hash (HGETALL), with the values it leaves out put back.

    Unknown fields are ignored.
    """

    def get(name: str) -> bytes | None:
        return row.get(STORED_BYTES[name])

    def count(name: str) -> int:
        return int(get(name) or DEFAULTS[name])

    args = _json_or_none(get("args"))
    kwargs = _json_or_none(get("kwargs"))
    payload_format = _text(get("payload_format")) or DEFAULTS["payload_format"]
    payload = get("payload")
    created_at = from_us(row[STORED_BYTES["created_at"]])
    end_time = _when(get("finished_at"))
    priority = get("priority")
    duration = get("duration_ms")
    return TaskRecord(
        task_id=task_id,
        func_name=row[STORED_BYTES["func_name"]].decode("utf-8"),
        status=TaskStatus(row[STORED_BYTES["status"]].decode("utf-8")),
        args=tuple(args) if args is not None else (),
        kwargs=dict(kwargs) if kwargs is not None else {},
        created_at=created_at,
        start_time=_when(get("started_at")),
        end_time=end_time,
        retries_used=count("attempt"),
        error=_text(get("error")),
        stacktrace=_text(get("stacktrace")),
        idempotency_key=_text(get("idempotency_key")),
        tags=dict(_json_or_none(get("tags")) or {}),
        encrypted_payload=payload if payload_format == "fernet" else None,
        source=_text(get("source")) or DEFAULTS["source"],
        priority=None if priority is None else int(priority),
        executor=_text(get("executor")),
        max_retries=count("max_retries"),
        run_at=_when(get("run_at")) or created_at,
        updated_at=_when(get("updated_at")) or end_time or created_at,
        duration_ms=None if duration is None else float(duration),
        result=_json_or_none(get("result")),
        args_stored=args is not None,
        payload=payload,
        payload_format=payload_format,
        owner=_text(get("owner")),
        lease_epoch=count("lease_epoch"),
        lease_expires_at=_when(get("lease_expires_at")),
        retried_from=_text(get("retried_from")),
        schedule_name=_text(get("schedule_name")),
        scheduled_for=_when(get("scheduled_for")),
    )


def log_to_json(entry: TaskLogEntry) -> str:
    """One element of a task's log list."""
    return _encode_json(
        {
            "id": entry.entry_id,
            "attempt": entry.attempt,
            "level": entry.level,
            "message": entry.message,
            "extra": entry.extra or None,
            "created_at": to_us(entry.created_at),
        }
    )


def log_from_json(task_id: str, raw: bytes | str) -> TaskLogEntry:
    """A stored log list element back as a ``TaskLogEntry``."""
    data = json.loads(raw)
    return TaskLogEntry(
        task_id=task_id,
        attempt=int(data["attempt"]),
        level=str(data["level"]),
        message=str(data["message"]),
        created_at=from_us(int(data["created_at"])),
        extra=dict(data.get("extra") or {}),
        entry_id=str(data["id"]),
    )


def render_logs(entries: list[TaskLogEntry], last_attempt: int) -> list[str]:
    """Log lines as fastapi-taskflow shows them, with ``--- Retry N ---`` between attempts."""
    lines: list[str] = []
    shown_attempt = 0
    for entry in entries:
        while shown_attempt < entry.attempt:
            shown_attempt += 1
            lines.append(f"--- Retry {shown_attempt} ---")
        lines.append(entry.render())
    while shown_attempt < last_attempt:
        shown_attempt += 1
        lines.append(f"--- Retry {shown_attempt} ---")
    return lines
