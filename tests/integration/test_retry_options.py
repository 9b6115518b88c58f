"""retry_on, dont_retry_on and max_delay end to end, on every SQL backend.

Each test runs a manager on a fresh schema, lets its tasks fail as written,
and reads the outcome from the database: the status and attempt count the
runner recorded, and for ``max_delay`` the retry's ``run_at`` read with plain
SQL while the retry waits.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from taskflow import TaskManager, TaskStatus, get_task_context
from tests.apps import process_tasks
from tests.polling import eventually, wait_for_status
from tests.processes import stored_utc


def attempt_number() -> int:
    context = get_task_context()
    assert context is not None
    return context.attempt


def make(url: str) -> TaskManager:
    return TaskManager(database_url=url, poll_interval=0.05)


async def test_retry_on_retries_only_the_errors_it_names(schema_db_url: str) -> None:
    attempts: list[int] = []
    raised = [ConnectionResetError("reset by peer"), ValueError("card number is malformed")]

    async def charge_card() -> None:
        attempts.append(attempt_number())
        raise raised[attempts[-1]]

    first_attempts: list[int] = []

    async def refund_card() -> None:
        first_attempts.append(attempt_number())
        raise KeyError("no such payment")

    manager = make(schema_db_url)
    manager.task(name="charge_card", retries=5, retry_on=ConnectionError)(charge_card)
    manager.task(name="refund_card", retries=5, retry_on=(ConnectionError,))(refund_card)
    await manager.startup()
    try:
        charged = await manager.enqueue(charge_card)
        refunded = await manager.enqueue(refund_card)
        charge = await wait_for_status(manager, charged, {TaskStatus.FAILED})
        refund = await wait_for_status(manager, refunded, {TaskStatus.FAILED})
        await manager.drain()
    finally:
        await manager.shutdown()
    # ConnectionResetError is a ConnectionError: retried once; the ValueError ends it.
    assert attempts == [0, 1]
    assert (charge.retries_used, charge.max_retries) == (1, 5)
    assert charge.error == "ValueError: card number is malformed"
    assert first_attempts == [0]
    assert (refund.retries_used, refund.max_retries) == (0, 5)
    assert refund.error == "KeyError: 'no such payment'"


async def test_dont_retry_on_stops_the_retries(schema_db_url: str) -> None:
    attempts: list[int] = []
    raised = [ConnectionError("share unreachable"), PermissionError("share is read-only")]

    def sync_invoices() -> None:  # a plain function: runs on the thread executor
        attempts.append(attempt_number())
        raise raised[attempts[-1]]

    manager = make(schema_db_url)
    manager.task(name="sync_invoices", retries=4, retry_on=OSError, dont_retry_on=PermissionError)(
        sync_invoices
    )
    await manager.startup()
    try:
        task_id = await manager.enqueue(sync_invoices)
        record = await wait_for_status(manager, task_id, {TaskStatus.FAILED})
        await manager.drain()
    finally:
        await manager.shutdown()
    # Both are OSErrors; PermissionError is also in dont_retry_on, which wins.
    assert attempts == [0, 1]
    assert (record.retries_used, record.max_retries) == (1, 4)
    assert record.error == "PermissionError: share is read-only"
    assert record.executor == "thread"


async def test_errors_raised_in_a_worker_process_match_by_class(schema_db_url: str) -> None:
    manager = make(schema_db_url)
    manager.task(executor="process", retries=1, retry_on=process_tasks.RefusedError)(
        process_tasks.refuses
    )
    manager.task(executor="process", retries=2, dont_retry_on=ValueError)(process_tasks.fails)
    await manager.startup()
    try:
        refused_id = await manager.enqueue(process_tasks.refuses, "over the limit")
        failed_id = await manager.enqueue(process_tasks.fails, "no such order")
        refused = await wait_for_status(manager, refused_id, {TaskStatus.FAILED})
        failed = await wait_for_status(manager, failed_id, {TaskStatus.FAILED})
        await manager.drain()
    finally:
        await manager.shutdown()
    assert refused.executor == failed.executor == "process"
    assert refused.retries_used == 1  # RefusedError came back as itself, and was retried
    assert refused.error == "RefusedError: over the limit"
    assert failed.retries_used == 0
    assert failed.error == "ValueError: no such order"


async def test_a_timeout_is_retried_only_where_the_lists_allow_timeout_error(
    schema_db_url: str,
) -> None:
    calls: dict[str, int] = {"narrow": 0, "broad": 0}

    async def narrow() -> None:
        calls["narrow"] += 1
        await asyncio.sleep(5)

    async def broad() -> None:
        calls["broad"] += 1
        await asyncio.sleep(5)

    manager = make(schema_db_url)
    manager.task(name="narrow", retries=2, timeout=0.1, retry_on=ConnectionError)(narrow)
    manager.task(name="broad", retries=1, timeout=0.1, dont_retry_on=ValueError)(broad)
    await manager.startup()
    try:
        narrow_id = await manager.enqueue(narrow)
        broad_id = await manager.enqueue(broad)
        narrowed = await wait_for_status(manager, narrow_id, {TaskStatus.FAILED})
        broadened = await wait_for_status(manager, broad_id, {TaskStatus.FAILED})
        await manager.drain()
    finally:
        await manager.shutdown()
    assert calls == {"narrow": 1, "broad": 2}
    assert narrowed.retries_used == 0 and broadened.retries_used == 1
    for record in (narrowed, broadened):
        assert record.error == "TimeoutError: the task ran longer than its timeout of 0.1s"


async def test_max_delay_caps_the_persisted_run_at_of_a_retry(
    schema_db_url: str, engine: AsyncEngine
) -> None:
    attempts: list[int] = []

    async def reconnect() -> str:
        attempts.append(attempt_number())
        if attempts[-1] < 3:
            raise ConnectionError("broker away")
        return "connected"

    async def waiting_row(task_id: str, attempt: int) -> Any:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT status, attempt, run_at, finished_at FROM taskflow_tasks"
                        " WHERE id = :id"
                    ),
                    {"id": task_id},
                )
            ).one_or_none()
        waiting = row is not None and row.status == "pending" and row.attempt == attempt
        return row if waiting else None

    manager = make(schema_db_url)
    # Uncapped, the waits would be 0.2 s, 20 s, then 2,000 s.
    manager.task(name="reconnect", retries=3, delay=0.2, backoff=100.0, max_delay=0.4)(reconnect)
    await manager.startup()
    try:
        task_id = await manager.enqueue(reconnect)
        waits = []
        for attempt in (1, 2, 3):
            row = await eventually(lambda attempt=attempt: waiting_row(task_id, attempt))
            # The failure's time and the retry's run_at come from one clock reading.
            waits.append(stored_utc(row.run_at) - stored_utc(row.finished_at))  # type: ignore[operator]
        record = await wait_for_status(manager, task_id, {TaskStatus.SUCCESS}, timeout=10)
        await manager.drain()
    finally:
        await manager.shutdown()
    assert waits == [timedelta(seconds=0.2), timedelta(seconds=0.4), timedelta(seconds=0.4)]
    assert attempts == [0, 1, 2, 3]
    assert record.retries_used == 3 and record.result == "connected"
    # It ran once its persisted run_at was due (asyncio's clock and the wall clock may
    # disagree by a hair).
    assert record.start_time is not None
    assert record.start_time >= record.run_at - timedelta(milliseconds=2)
