"""``SqlTaskRepository.list_tasks``: newest first, keyset pages, filters, search.

They run on SQLite, PostgreSQL and MySQL.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from taskflow.models import TaskRecord, TaskStatus
from taskflow.repository.base import TaskQuery, WriteBatch
from taskflow.repository.cursor import InvalidCursorError, encode_cursor
from taskflow.repository.sql import SqlTaskRepository
from tests.integration.repository.records import PLUS_2, assert_aware_utc, make_record, tid

FUNCS = ("send_email", "resize_image", "sync_crm")
SOURCES = ("manual", "scheduled", "retry", "requeue")
STATUSES = tuple(TaskStatus)
SAME_MOMENT = datetime(2024, 6, 1, 12, 0, 0, 250000, tzinfo=timezone.utc)
LIST_SIZE = 70


def listing_records() -> list[TaskRecord]:
    """70 tasks: 42 of them share one created_at, the rest are spread around it."""
    records = []
    for n in range(1, LIST_SIZE + 1):
        if n % 5 in (1, 3):  # 28 spread out: before and after the shared moment
            offset = timedelta(seconds=(n - 35) * 60, microseconds=n)
            created = SAME_MOMENT + offset
        else:
            created = SAME_MOMENT
        records.append(
            make_record(
                n,
                created_at=created,
                func_name=FUNCS[n % 3],
                source=SOURCES[n % 4],
                status=STATUSES[n % 6],
            )
        )
    return records


def newest_first(records: Iterable[TaskRecord]) -> list[str]:
    ordered = sorted(records, key=lambda r: (r.created_at, r.task_id), reverse=True)
    return [r.task_id for r in ordered]


async def walk(repo: SqlTaskRepository, query: TaskQuery) -> tuple[list[str], int]:
    ids: list[str] = []
    pages = 0
    cursor = None
    while True:
        page = await repo.list_tasks(dataclasses.replace(query, cursor=cursor))
        pages += 1
        assert len(page.items) <= query.limit
        ids.extend(r.task_id for r in page.items)
        if page.next_cursor is None:
            return ids, pages
        assert len(page.items) == query.limit
        cursor = page.next_cursor
        assert pages <= LIST_SIZE + 1, "pagination does not terminate"


@pytest.fixture
async def listed(repo: SqlTaskRepository) -> list[TaskRecord]:
    records = listing_records()
    await repo.apply(WriteBatch(inserts=records[::2]))
    await repo.apply(WriteBatch(inserts=records[1::2]))
    return records


async def test_list_newest_first_with_list_columns(
    repo: SqlTaskRepository, listed: list[TaskRecord]
) -> None:
    page = await repo.list_tasks(TaskQuery(limit=LIST_SIZE))
    assert page.next_cursor is None
    assert [r.task_id for r in page.items] == newest_first(listed)
    by_id = {r.task_id: r for r in listed}
    for item in page.items:
        # The list leaves out payload and stack trace; everything else is the stored row.
        assert item == by_id[item.task_id]
        assert_aware_utc(item)
    assert sum(1 for r in listed if r.created_at == SAME_MOMENT) == 42


@pytest.mark.parametrize("page_size", [1, 7, 50])
async def test_keyset_pagination_walks_every_row_once(
    repo: SqlTaskRepository, listed: list[TaskRecord], page_size: int
) -> None:
    ids, pages = await walk(repo, TaskQuery(limit=page_size))
    assert len(ids) == len(set(ids)) == LIST_SIZE
    assert ids == newest_first(listed)
    assert pages == -(-LIST_SIZE // page_size)  # no trailing empty page when it divides evenly

    wanted = [TaskStatus.PENDING, TaskStatus.SUCCESS, TaskStatus.CANCELLED]
    ids, _ = await walk(repo, TaskQuery(limit=page_size, status=wanted))
    assert ids == newest_first(r for r in listed if r.status in wanted)


async def test_cursor_of_the_last_shared_timestamp_row_continues_correctly(
    repo: SqlTaskRepository, listed: list[TaskRecord]
) -> None:
    order = newest_first(listed)
    by_id = {r.task_id: r for r in listed}
    for position in (0, 20, 41, 50, LIST_SIZE - 2):
        last = by_id[order[position]]
        cursor = encode_cursor(last.created_at, last.task_id)
        page = await repo.list_tasks(TaskQuery(limit=5, cursor=cursor))
        assert [r.task_id for r in page.items] == order[position + 1 : position + 6]


async def test_list_filters(repo: SqlTaskRepository, listed: list[TaskRecord]) -> None:
    async def ids(**filters: Any) -> list[str]:
        page = await repo.list_tasks(TaskQuery(limit=500, **filters))
        assert page.next_cursor is None
        return [r.task_id for r in page.items]

    several = [TaskStatus.FAILED, TaskStatus.INTERRUPTED, TaskStatus.CANCELLED]
    assert await ids(status=several) == newest_first(r for r in listed if r.status in several)
    assert await ids(status=[TaskStatus.RUNNING]) == newest_first(
        r for r in listed if r.status is TaskStatus.RUNNING
    )
    assert await ids(func_name="sync_crm") == newest_first(
        r for r in listed if r.func_name == "sync_crm"
    )
    assert await ids(func_name="nope") == []
    assert await ids(source="scheduled") == newest_first(
        r for r in listed if r.source == "scheduled"
    )

    # created_since is inclusive, created_until exclusive, both aware (any zone).
    since = SAME_MOMENT
    until = SAME_MOMENT + timedelta(seconds=(41 - 35) * 60, microseconds=41)  # row 41's moment
    assert await ids(created_since=since) == newest_first(
        r for r in listed if r.created_at >= since
    )
    assert await ids(created_until=since) == newest_first(r for r in listed if r.created_at < since)
    window = await ids(created_since=since.astimezone(PLUS_2), created_until=until)
    assert window == newest_first(r for r in listed if since <= r.created_at < until)
    assert tid(41) not in window and len(window) > 42

    combined = await ids(
        status=[TaskStatus.PENDING, TaskStatus.SUCCESS],
        func_name="send_email",
        created_since=since,
    )
    assert combined == newest_first(
        r
        for r in listed
        if r.status in (TaskStatus.PENDING, TaskStatus.SUCCESS)
        and r.func_name == "send_email"
        and r.created_at >= since
    )


async def test_list_search_substring_of_id_or_func_name(
    repo: SqlTaskRepository, listed: list[TaskRecord]
) -> None:
    async def ids(search: str) -> list[str]:
        page = await repo.list_tasks(TaskQuery(limit=500, search=search))
        return [r.task_id for r in page.items]

    assert await ids("resize") == newest_first(r for r in listed if "resize" in r.func_name)
    assert await ids("crm") == newest_first(r for r in listed if r.func_name == "sync_crm")
    assert await ids(tid(45)[-6:]) == [tid(45)]  # a piece of one id
    assert await ids("zzz") == []
    # Characters that are LIKE wildcards are searched for literally.
    assert await ids("send_email") == newest_first(r for r in listed if r.func_name == "send_email")
    assert await ids("c_r") == []
    assert await ids("%") == []


async def test_list_search_is_case_insensitive_on_every_backend(
    repo: SqlTaskRepository, listed: list[TaskRecord]
) -> None:
    # SQLite's and MySQL's LIKE ignore ASCII case; the same search must find the same rows.
    page = await repo.list_tasks(TaskQuery(limit=500, search="RESIZE"))
    assert [r.task_id for r in page.items] == newest_first(
        r for r in listed if r.func_name == "resize_image"
    )


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        "Zm9v",  # "foo": no separator
        encode_cursor(datetime(2024, 1, 1), tid(1)),  # naive: not one of ours
        base64.urlsafe_b64encode("😂|not-a-date".encode()).decode(),
        base64.urlsafe_b64encode(b"\xff\xfe|x").decode(),  # not UTF-8
        "é",
    ],
)
async def test_invalid_cursor_raises(repo: SqlTaskRepository, cursor: str) -> None:
    with pytest.raises(InvalidCursorError):
        await repo.list_tasks(TaskQuery(cursor=cursor))
