"""The task list's query parameters, declared once for ``GET {path}`` and the dashboard stream.

Both routes take the same filters (status, function, search, creation time)
and page position (cursor, limit); each declares only its own page bounds.
``task_query`` runs the values through ``inputs`` before any query is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

from fastapi import Query

from taskflow.models import TaskStatus
from taskflow.repository.base import TaskQuery
from taskflow.web import inputs

MAX_CURSOR = 512

StatusFilter = Annotated[list[TaskStatus] | None, Query()]
FuncNameFilter = Annotated[str | None, Query(max_length=255)]
SearchFilter = Annotated[str | None, Query(max_length=200)]
CursorParam = Annotated[str | None, Query(max_length=MAX_CURSOR)]


def task_query(
    *,
    status: Sequence[TaskStatus] | None,
    func_name: str | None,
    search: str | None,
    limit: int,
    cursor: str | None,
    since: datetime | None = None,
    until: datetime | None = None,
    source: str | None = None,
) -> TaskQuery:
    """A ``TaskQuery`` of checked values, or a 422 naming the parameter that failed."""
    return TaskQuery(
        status=status,
        func_name=inputs.optional_text(func_name, "func_name"),
        source=inputs.optional_text(source, "source"),
        created_since=inputs.moment(since, "since"),
        created_until=inputs.moment(until, "until"),
        search=inputs.optional_text(search, "search"),
        limit=limit,
        cursor=inputs.cursor(cursor),
    )
