"""list_tasks(): newest first, keyset pages that visit every row once, and filters."""

from __future__ import annotations

from typing import Any

import pytest

from taskflow.models import TaskRecord, TaskStatus
from taskflow.repository.base import TaskQuery, TaskRepository, WriteBatch
from tests.conformance.records import at, make_record, tid

STATUSES = list(TaskStatus)


def listing_records() -> list[TaskRecord]:
    """Twelve tasks of three functions and every status; tasks 5-8 share one created_at."""
    records = []
    for n in range(1, 13):
        created = at(100) if 5 <= n <= 8 else at(n)
        records.append(
            make_record(
                n,
                created_at=created,
                func_name=("send_email", "build_report", "Resize_Image")[n % 3],
                status=STATUSES[n % len(STATUSES)],
                source="retry" if n % 4 == 0 else "manual",
            )
        )
    return records


def newest_first(records: list[TaskRecord]) -> list[str]:
    ordered = sorted(records, key=lambda r: (r.created_at, r.task_id), reverse=True)
    return [r.task_id for r in ordered]


@pytest.fixture
async def listed(backend: TaskRepository) -> list[TaskRecord]:
    records = listing_records()
    await backend.apply(WriteBatch(inserts=records))
    return records


async def ids(backend: TaskRepository, **filters: Any) -> list[str]:
    page = await backend.list_tasks(TaskQuery(limit=100, **filters))
    assert page.next_cursor is None
    return [r.task_id for r in page.items]


async def test_list_is_newest_first(backend: TaskRepository, listed: list[TaskRecord]) -> None:
    page = await backend.list_tasks(TaskQuery(limit=100))
    assert [r.task_id for r in page.items] == newest_first(listed)
    assert page.next_cursor is None
    by_id = {r.task_id: r for r in listed}
    for item in page.items:
        expected = by_id[item.task_id]
        assert (item.func_name, item.status, item.source, item.created_at) == (
            expected.func_name,
            expected.status,
            expected.source,
            expected.created_at,
        )


@pytest.mark.parametrize("limit", [1, 3, 4, 5, 12])
async def test_pages_visit_every_row_once(
    backend: TaskRepository, listed: list[TaskRecord], limit: int
) -> None:
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await backend.list_tasks(TaskQuery(limit=limit, cursor=cursor))
        pages += 1
        assert len(page.items) <= limit
        seen += [r.task_id for r in page.items]
        if page.next_cursor is None:
            break
        assert len(page.items) == limit
        cursor = page.next_cursor
    assert seen == newest_first(listed)
    assert pages == -(-len(listed) // limit)  # no empty last page


async def test_empty_store_lists_nothing(backend: TaskRepository) -> None:
    page = await backend.list_tasks(TaskQuery())
    assert (page.items, page.next_cursor) == ([], None)


async def test_filter_by_status(backend: TaskRepository, listed: list[TaskRecord]) -> None:
    wanted = [TaskStatus.FAILED, TaskStatus.PENDING]
    expected = newest_first([r for r in listed if r.status in wanted])
    assert await ids(backend, status=wanted) == expected and expected


async def test_filter_by_function_and_source(
    backend: TaskRepository, listed: list[TaskRecord]
) -> None:
    by_func = newest_first([r for r in listed if r.func_name == "build_report"])
    assert await ids(backend, func_name="build_report") == by_func
    by_source = newest_first([r for r in listed if r.source == "retry"])
    assert await ids(backend, source="retry") == by_source and by_source


async def test_filter_by_created_window(backend: TaskRepository, listed: list[TaskRecord]) -> None:
    # created_since is inclusive, created_until exclusive.
    expected = newest_first([r for r in listed if at(3) <= r.created_at < at(100)])
    assert await ids(backend, created_since=at(3), created_until=at(100)) == expected
    assert tid(3) in expected and tid(5) not in expected


async def test_search_matches_id_or_function_ignoring_case(
    backend: TaskRepository, listed: list[TaskRecord]
) -> None:
    resize = newest_first([r for r in listed if r.func_name == "Resize_Image"])
    assert await ids(backend, search="resize_") == resize
    assert await ids(backend, search="RESIZE") == resize
    assert await ids(backend, search=tid(7)[-6:].upper()) == [tid(7)]
    assert await ids(backend, search="%") == []  # a literal, not a wildcard


async def test_filters_combine_with_pages(
    backend: TaskRepository, listed: list[TaskRecord]
) -> None:
    expected = newest_first([r for r in listed if r.func_name == "send_email"])
    seen: list[str] = []
    cursor = None
    while True:
        page = await backend.list_tasks(TaskQuery(func_name="send_email", limit=1, cursor=cursor))
        seen += [r.task_id for r in page.items]
        if (cursor := page.next_cursor) is None:
            break
    assert seen == expected
