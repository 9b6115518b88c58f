"""``GET {path}/dashboard/stream``: server-sent deltas of the page a dashboard shows.

Each client opens the stream with its view (filters, page cursor, limit and
optionally the task open in its detail panel) and reconnects when the view
changes.  Protocol:

* ``snapshot``: ``{tasks, next_cursor, metrics, detail}`` right away;
* ``tasks``: ``{upserts, removed, order, next_cursor}``: only the rows whose
  content changed, the ids that left the page, and the page order;
* ``metrics``: the aggregates over every task, when they changed;
* ``detail``: the open task with its logs, when it changed;
* ``bye``: ``{reason}`` before the server ends the stream (shutdown, or the
  stream's age limit: reconnect at once);
* ``: keep-alive`` comments every 15 s.

Changes made by this instance wake the stream at once (the manager's
``ChangeFeed``); changes made by other instances are found by re-reading the
page every ``poll_interval`` seconds, an indexed query of ``limit`` rows.
Pushes are debounced to at most four a second per client.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from taskflow.models import TaskRecord
from taskflow.repository.base import TaskQuery
from taskflow.runtime.changes import ChangeWaiter
from taskflow.web import inputs
from taskflow.web.access import AdminAccess
from taskflow.web.admin_route import AdminRoute
from taskflow.web.dashboard import SECURITY_HEADERS
from taskflow.web.prefixed_router import PrefixedRouter
from taskflow.web.session_access import SessionAccess
from taskflow.web.task_filters import (
    CursorParam,
    FuncNameFilter,
    SearchFilter,
    StatusFilter,
    task_query,
)

if TYPE_CHECKING:
    from taskflow.manager import TaskManager

KEEP_ALIVE = 15.0
MIN_PUSH_GAP = 0.25  # at most four pushes a second per client
METRICS_TTL = 0.2  # one metrics query serves every client woken by the same change
# uvicorn waits for open responses before it shuts down: a stream ends itself
# after this long (the browser reconnects at once), so a restart never hangs on it.
MAX_AGE = 20.0
MAX_LIMIT = 100


@dataclass(frozen=True)
class View:
    """What one client shows: the page query and the task open in its detail panel."""

    query: TaskQuery
    task_id: str | None = None


def sse(event: str, data: Any) -> str:
    """One server-sent event; JSON never contains a raw newline, so one data line suffices."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _repr_args(record: TaskRecord) -> dict[str, Any]:
    if not record.args_stored:
        return {"args": None, "kwargs": None}
    return {
        "args": [repr(a) for a in record.args],
        "kwargs": {k: repr(v) for k, v in record.kwargs.items()},
    }


class MetricsCache:
    """Metrics shared by every stream: at most one query per ``METRICS_TTL``."""

    def __init__(self, task_manager: TaskManager) -> None:
        self._manager = task_manager
        self._value: dict[str, Any] | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> dict[str, Any]:
        async with self._lock:
            if self._value is None or time.monotonic() - self._at > METRICS_TTL:
                metrics = (await self._manager.metrics()).to_dict()
                metrics.pop("by_function", None)  # the detail panel fetches /metrics itself
                self._value, self._at = metrics, time.monotonic()
            return self._value


class ViewStream:
    """The events of one client: remembers what it sent, sends only what changed."""

    def __init__(
        self, task_manager: TaskManager, metrics: MetricsCache, view: View, show_args: bool
    ) -> None:
        self.manager = task_manager
        self.metrics_cache = metrics
        self.view = view
        self.show_args = show_args
        self.rows: dict[str, str] = {}
        self.order: list[str] = []
        self.next_cursor: str | None = None
        self.metrics: dict[str, Any] | None = None
        self.detail: str | None = None

    async def _page(self) -> tuple[dict[str, dict[str, Any]], list[str], str | None]:
        page = await self.manager.list_tasks(self.view.query)
        rows = {r.task_id: r.to_dict(include_logs=False) for r in page.items}
        return rows, [r.task_id for r in page.items], page.next_cursor

    async def _detail(self) -> dict[str, Any] | None:
        if self.view.task_id is None:
            return None
        record = await self.manager.get_task(self.view.task_id)
        if record is None:
            return {"task_id": self.view.task_id, "missing": True}
        data = record.to_dict()
        if self.show_args:
            data.update(_repr_args(record))
        return data

    async def snapshot(self) -> str:
        rows, self.order, self.next_cursor = await self._page()
        self.rows = {task_id: json.dumps(row, sort_keys=True) for task_id, row in rows.items()}
        self.metrics = await self.metrics_cache.get()
        detail = await self._detail()
        self.detail = json.dumps(detail, sort_keys=True) if detail else None
        payload = {
            "tasks": [rows[task_id] for task_id in self.order],
            "next_cursor": self.next_cursor,
            "metrics": self.metrics,
            "detail": detail,
        }
        return sse("snapshot", payload)

    async def changes(self, changed: frozenset[str] | None) -> list[str]:
        """Events for what changed since the last call (an empty list: nothing did)."""
        events = []
        if self._page_may_have_changed(changed):
            tasks = await self._page_delta()
            if tasks is not None:
                events.append(sse("tasks", tasks))
        metrics = await self.metrics_cache.get()
        if metrics != self.metrics:
            self.metrics = metrics
            events.append(sse("metrics", metrics))
        if self.view.task_id is not None and (changed is None or self.view.task_id in changed):
            detail = await self._detail()
            encoded = json.dumps(detail, sort_keys=True)
            if encoded != self.detail:
                self.detail = encoded
                events.append(sse("detail", detail))
        return events

    def _page_may_have_changed(self, changed: frozenset[str] | None) -> bool:
        # New tasks only ever land on the first page (newest first); a later
        # page changes only when one of its own rows does.
        if changed is None or self.view.query.cursor is None:
            return True
        return not changed.isdisjoint(self.rows)

    async def _page_delta(self) -> dict[str, Any] | None:
        rows, order, next_cursor = await self._page()
        upserts = []
        encoded_rows = {}
        for task_id in order:
            encoded = json.dumps(rows[task_id], sort_keys=True)
            encoded_rows[task_id] = encoded
            if self.rows.get(task_id) != encoded:
                upserts.append(rows[task_id])
        removed = [task_id for task_id in self.order if task_id not in rows]
        if not upserts and not removed and order == self.order and next_cursor == self.next_cursor:
            return None
        self.rows, self.order, self.next_cursor = encoded_rows, order, next_cursor
        return {"upserts": upserts, "removed": removed, "order": order, "next_cursor": next_cursor}


async def run_stream(
    request: Request,
    stream: ViewStream,
    waiter: ChangeWaiter,
    first: str,
    poll_interval: float,
    signed_in: Callable[[], Awaitable[bool]] | None = None,
) -> AsyncIterator[str]:
    """The events of one client, until it leaves, the manager stops, or ``MAX_AGE``.

    ``signed_in`` (with logins) is asked again at every poll: a session that
    was revoked or expired ends the stream within a poll interval (plus the
    session cache's few seconds on other instances), not at ``MAX_AGE``.
    """
    try:
        yield "retry: 2000\n\n" + first
        started = last_push = last_sent = last_poll = last_check = time.monotonic()
        while True:
            now = time.monotonic()
            deadline = min(
                last_poll + poll_interval,
                last_check + poll_interval,
                last_sent + KEEP_ALIVE,
                started + MAX_AGE,
            )
            woken = await waiter.wait(timeout=max(0.0, deadline - now))
            if waiter.closed:
                yield sse("bye", {"reason": "shutdown"})
                return
            if await request.is_disconnected():
                return
            now = time.monotonic()
            if now >= started + MAX_AGE:
                yield sse("bye", {"reason": "reconnect"})
                return
            # On its own clock: pushes of changes reset last_poll, and a busy
            # system must not keep a revoked session streaming.
            if signed_in is not None and now >= last_check + poll_interval:
                last_check = now
                if not await signed_in():
                    yield sse("bye", {"reason": "signed-out"})
                    return
            if woken or now >= last_poll + poll_interval:
                await asyncio.sleep(max(0.0, last_push + MIN_PUSH_GAP - now))  # let bursts settle
                changed = waiter.take() if woken else None
                last_poll = last_push = time.monotonic()
                events = await stream.changes(changed)
                if events:
                    last_sent = last_push
                    yield "".join(events)
                    continue
            if time.monotonic() >= last_sent + KEEP_ALIVE:
                last_sent = time.monotonic()
                yield ": keep-alive\n\n"
    finally:
        waiter.unsubscribe()


def _session_check(access: AdminAccess, request: Request) -> Callable[[], Awaitable[bool]] | None:
    """With logins, whether the stream's session is still valid; None without logins."""
    if not isinstance(access, SessionAccess):
        return None
    sessions = access

    async def signed_in() -> bool:
        return await sessions.current(request) is not None

    return signed_in


def create_stream_router(
    task_manager: TaskManager,
    *,
    path: str,
    access: AdminAccess,
    poll_interval: float = 2.0,
    display_func_args: bool = False,
) -> APIRouter:
    """``GET {path}/dashboard/stream``, readable by viewers."""
    router = PrefixedRouter(
        prefix=f"{path}/dashboard",
        include_in_schema=False,
        dependencies=[Depends(access.viewer)],
        route_class=AdminRoute,
    )
    metrics = MetricsCache(task_manager)

    @router.get("/stream")
    async def stream(
        request: Request,
        status: StatusFilter = None,
        func_name: FuncNameFilter = None,
        since: datetime | None = None,
        search: SearchFilter = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 30,
        cursor: CursorParam = None,
        task: Annotated[str | None, Query(max_length=64)] = None,
    ) -> StreamingResponse:
        # An empty filter is no filter, like an absent one.
        query = task_query(
            status=status,
            func_name=func_name or None,
            since=since,
            search=search or None,
            limit=limit,
            cursor=cursor,
        )
        task = inputs.optional_text(task or None, "task")
        view_stream = ViewStream(task_manager, metrics, View(query, task), display_func_args)
        # Subscribe before the snapshot, so nothing committed in between is missed.
        waiter = task_manager.changes.subscribe()
        try:
            first = await view_stream.snapshot()
        except BaseException:
            waiter.unsubscribe()
            raise
        headers = dict(SECURITY_HEADERS)
        headers.update({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        signed_in = _session_check(access, request)
        return StreamingResponse(
            run_stream(request, view_stream, waiter, first, poll_interval, signed_in),
            media_type="text/event-stream",
            headers=headers,
        )

    return router
