"""Opaque keyset-pagination cursors: the (created_at, id) of the last row shown."""

from __future__ import annotations

import base64
from datetime import datetime, timezone

from taskflow.exceptions import TaskflowError


class InvalidCursorError(TaskflowError, ValueError):
    """A pagination cursor was not produced by taskflow (or was truncated)."""


def encode_cursor(created_at: datetime, task_id: str) -> str:
    raw = f"{created_at.isoformat()}|{task_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at in UTC, task id) a cursor holds.

    Raises:
        InvalidCursorError: anything ``encode_cursor`` could not have made,
            including what a database would refuse (a NUL in the id, a time
            that overflows once in UTC).
    """
    invalid = InvalidCursorError(
        f"invalid cursor {cursor!r}: not produced by taskflow; "
        "pass the next_cursor of a previous page"
    )
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, task_id = base64.urlsafe_b64decode(padded).decode().split("|", 1)
        moment = datetime.fromisoformat(created)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid from exc
    if moment.tzinfo is None or "\x00" in task_id:
        raise invalid
    try:
        return moment.astimezone(timezone.utc), task_id
    except OverflowError:
        raise invalid from None
