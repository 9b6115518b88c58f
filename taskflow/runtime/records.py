"""Building task records: validation of a call's options and the new row's fields."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from taskflow.exceptions import TaskArgumentError
from taskflow.ids import new_task_id
from taskflow.models import TaskRecord, TaskSource, TaskStatus, utcnow
from taskflow.registry import RegisteredTask
from taskflow.serialization import Cipher, check_argument_size, encode_arguments
from taskflow.storable import is_storable_text, storable_text

MAX_KEY_LENGTH = 255
# Tags are labels to filter and read by: longer values are cut, visibly.
MAX_TAG_CHARS = 1024


def new_record(
    target: RegisteredTask,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    owner: str | None,
    lease_seconds: float,
    cipher: Cipher | None,
    idempotency_key: str | None = None,
    tags: dict[str, Any] | None = None,
    priority: int | None = None,
    source: TaskSource = TaskSource.MANUAL,
    max_argument_bytes: int | None = None,
    run_at: datetime | None = None,
) -> TaskRecord:
    """A pending task row for a call, leased to ``owner`` (None: any instance may claim it).

    ``max_argument_bytes``: the most the database stores of one task's
    arguments (see ``TaskRepository.max_argument_bytes``).  ``run_at``: when
    it is due, if not now.

    Raises:
        TaskArgumentError: the arguments, key or tags cannot be stored.
    """
    encoded = encode_arguments(args, kwargs, cipher)
    if max_argument_bytes is not None:
        check_argument_size(encoded, max_argument_bytes)
    now = utcnow()
    return TaskRecord(
        task_id=new_task_id(),
        func_name=target.name,
        status=TaskStatus.PENDING,
        args=tuple(args) if encoded.readable else (),
        kwargs=dict(kwargs) if encoded.readable else {},
        created_at=now,
        idempotency_key=check_key(idempotency_key),
        tags=check_tags(tags),
        source=source.value,
        priority=priority if priority is not None else target.config.priority,
        executor=target.executor,
        max_retries=target.config.retries,
        run_at=now if run_at is None else run_at,
        updated_at=now,
        args_stored=encoded.readable,
        payload=encoded.payload,
        payload_format=encoded.payload_format,
        encrypted_payload=encoded.payload if encoded.payload_format == "fernet" else None,
        owner=owner,
        lease_epoch=1,
        lease_expires_at=now + _lease(lease_seconds) if owner else None,
    )


@lru_cache(maxsize=8)
def _lease(seconds: float) -> timedelta:
    # One lease length per manager: built once, not on every add_task().
    return timedelta(seconds=seconds)


def check_key(key: str | None, option: str = "idempotency_key") -> str | None:
    """``key`` if the database can store and match it (``option``: its name, for the message)."""
    if key is None:
        return None
    if not isinstance(key, str) or not key:
        raise TaskArgumentError(f"{option} must be a non-empty string, got {key!r}")
    if len(key) > MAX_KEY_LENGTH:
        raise TaskArgumentError(
            f"{option} is {len(key)} characters; the limit is {MAX_KEY_LENGTH}: "
            "hash long keys (e.g. sha256 hex) before passing them"
        )
    if not is_storable_text(key):
        # A key is matched exactly, so it cannot be cleaned like a label.
        raise TaskArgumentError(
            f"{option} holds NUL or a lone surrogate, which databases cannot store: "
            "hash it (e.g. sha256 hex of its UTF-8 bytes with 'surrogatepass') first"
        )
    return key


def check_tags(tags: dict[str, Any] | None) -> dict[str, str]:
    """Tags as stored: string values, text every database stores (see ``storable``)."""
    if tags is None:
        return {}
    if not isinstance(tags, dict):
        raise TaskArgumentError(f"tags must be a dict of str to str, got {type(tags).__name__}")
    checked: dict[str, str] = {}
    for key, value in tags.items():
        if not isinstance(key, str):
            raise TaskArgumentError(f"tag names must be strings, got {key!r}")
        text = value if isinstance(value, str) else str(value)
        checked[storable_text(key, MAX_TAG_CHARS)] = storable_text(text, MAX_TAG_CHARS)
    return checked
